"""The one database of the local backend (see email_store.py for the map): the group-commit engine,
versioned migrations, and a repository per area (mail, send states, accounts, admin, the webhook outbox)."""
