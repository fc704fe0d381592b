"""The API key a request presents: the one reader for the REST API, the WebSocket API and the daemon's routes."""

from __future__ import annotations

from starlette.requests import HTTPConnection

__all__ = ["presented_key"]


def presented_key(connection: HTTPConnection, *, from_query: bool = False) -> str | None:
    """The key from `X-API-Key`, else `Authorization: Bearer <key>`, else (`from_query`) `?api_key=`.

    Only WebSockets take the query form: a browser cannot set headers on one. None when absent.
    """
    key = connection.headers.get("x-api-key")
    if not key:
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else None
    if not key and from_query:
        key = connection.query_params.get("api_key")
    return key or None
