"""Events: the event model built from stored rows (model.py) and the in-process hub that fans them
out to subscribers (hub.py); webhooks/ and api/websocket.py consume them."""
