"""presented_key: one reader of the API key for REST, WebSocket and the daemon's own routes."""

from __future__ import annotations

import pytest
from starlette.requests import HTTPConnection

from mam_mcp.local.auth.credentials import presented_key


def connection(headers: dict[str, str], query: str = "") -> HTTPConnection:
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    return HTTPConnection({"type": "http", "headers": raw, "query_string": query.encode()})


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({"X-API-Key": "tk_header", "Authorization": "Bearer tk_bearer"}, "api_key=tk_query", "tk_header"),
        ({"Authorization": "bearer  tk_bearer "}, "api_key=tk_query", "tk_bearer"),
        ({"X-API-Key": "", "Authorization": "Basic dXNlcjpwYXNz"}, "api_key=tk_query", "tk_query"),
        ({"Authorization": "Bearer "}, "", None),
        ({}, "", None),
    ],
)
def test_header_first_then_bearer_then_the_query_for_websockets(
    headers: dict[str, str], query: str, expected: str | None
) -> None:
    assert presented_key(connection(headers, query), from_query=True) == expected


def test_rest_and_daemon_routes_never_read_the_query() -> None:
    # A key in a URL ends up in logs and browser history: only a WebSocket, which cannot set headers, may.
    assert presented_key(connection({}, "api_key=tk_query")) is None
    assert presented_key(connection({"Authorization": "Bearer tk_b"}, "api_key=tk_query")) == "tk_b"
