"""Webhook delivery: the dispatcher (a sink of events, signing and retrying POSTs) and its delivery log."""
