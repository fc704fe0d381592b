"""The one way a create route answers: once per `Idempotency-Key` (service/idempotency.py).

Every POST that creates something (inbox, inbox or workspace key, address, draft, list, list
entry, domain, workspace, webhook) runs its creation through `create_once`: with an
`Idempotency-Key` header, the same caller repeating the same request gets the first answer again
(status, body, and `Idempotent-Replayed: true`) and nothing is created twice. Sends have their own
per-inbox record (`LocalBackend.send`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from mam_mcp.local.api.access import backend_of
from mam_mcp.local.auth.scope import KeyScope
from mam_mcp.local.service.idempotency import Created, fingerprint

__all__ = ["create_once", "idempotency_key"]

REPLAYED_HEADER = "Idempotent-Replayed"


def idempotency_key(request: Request) -> str | None:
    """The request's `Idempotency-Key` header (its length is checked by the service)."""
    return request.headers.get("idempotency-key")


async def create_once(
    request: Request,
    scope: KeyScope,
    make: Callable[[], Awaitable[dict[str, Any]]],
    *,
    status: int = 201,
    secret_fields: Sequence[str] = (),
) -> JSONResponse:
    """`make()` (the creation, returning the wire body) run at most once per Idempotency-Key.

    Call it after the body was parsed (`parse_body`): the fingerprint covers the body's bytes.
    """

    async def create() -> Created:
        return Created(status, await make())

    raw: bytes = getattr(request.state, "raw_body", b"")
    created = await backend_of(request).requests.run(
        owner=scope.key_id,
        route=f"{request.method} {_route_template(request)}",
        key=idempotency_key(request),
        request_fingerprint=fingerprint(request.method, request.url.path, request.url.query, raw),
        create=create,
        secret_fields=secret_fields,
    )
    response = JSONResponse(created.body, status_code=created.status)
    if created.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response


def _route_template(request: Request) -> str:
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else request.url.path
