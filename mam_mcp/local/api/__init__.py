"""The REST API (/v1, docs/contract.md) and the WebSocket API (/v1/ws) over the service.

app.py builds the Starlette app; access.py (who calls, what they may see), params.py (request
bodies and query) and wire.py (response shapes) serve the route modules inboxes.py, messages.py,
admin.py; websocket.py serves events from the hub.
"""
