"""The embedded local backend: the same /v1 API as the hosted service, on this machine.

Mail flows through it in this order (each a package here):

    smtp/      SMTP ingress (aiosmtpd): RCPT checks, DATA handed to the service, 250 once durable
    mime/      parse inbound mail, build outbound mail
    service/   LocalBackend, the composition root: ingest, sends, replies/forwards, event fan-out
    store/     the one SQLite database: engine (group commit), migrations, repositories
    events/    the event model and the in-process hub
    webhooks/  signed, retried webhook delivery from the outbox (rows committed with their mail)
    relay/     outbound delivery through an SMTP relay, and the retry worker for sends
    api/       the REST routes and the WebSocket API over the service
    console/   the web console at /console (mam-mcp console opens it)
    auth/      key scopes, API keys, the one reader of a presented key
    daemon/    the process: composition, listeners, idle shutdown, data dir files; the launcher

`python -m mam_mcp.local` runs the daemon (daemon/run.py); config.py is built once by the caller.
Nothing here imports the MCP layer (tests/test_layers.py).
"""
