"""The service layer: LocalBackend (backend.py) composes store, keys, relay and event sinks; what a send
is and comes to (outgoing.py), replies and forwards (compose.py), the API error (errors.py); what the
REST routes call: accounts.py, mailbox.py, admin.py, and idempotency.py for the creates."""
