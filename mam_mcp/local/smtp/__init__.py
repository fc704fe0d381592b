"""SMTP ingress: an aiosmtpd server that checks recipients and hands accepted mail to the service."""
