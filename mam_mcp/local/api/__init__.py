"""The REST API (/v1, docs/contract.md) and the WebSocket API (/v1/ws) over the service.

app.py builds the Starlette app; access.py (who calls, what they may see), creates.py (a create
answered once per Idempotency-Key), params.py (request bodies and query) and wire.py (response
shapes) serve the route modules inboxes.py, messages.py, admin.py, which call the services and
never the store; websocket.py serves events from the hub.
"""
