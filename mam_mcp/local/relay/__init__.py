"""Outbound delivery: the SMTP relay client (smtp_relay.py) and the worker that retries sends the relay
could not take yet (retries.py)."""
