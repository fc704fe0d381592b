"""Webhook delivery: the dispatcher (a worker over the store's outbox: signing and retrying POSTs) and the
delivery log's shape, with the one-time import of an older install's `webhooks.db`."""
