"""RFC 5322 mail: parse.py reads inbound messages (never raising), build.py writes outbound ones."""
