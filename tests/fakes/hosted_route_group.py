"""Shared plumbing of the fake's route groups: the key's scope, inbox lookup, paging, 403s."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from mam_mcp.local.auth.scope import KeyScope
from tests.fakes.hosted_errors import FakeApiError
from tests.fakes.hosted_records import InboxRecord

if TYPE_CHECKING:
    from tests.fakes.hosted_api import FakeHostedAPI

__all__ = ["OK_BODY", "RouteGroup", "page"]

OK_BODY = {"ok": True}


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise FakeApiError(
            400,
            "VALIDATION_ERROR",
            f"{name} must be an integer in {low}..{high}",
            details=[{"path": name, "message": f"integer {low}..{high}"}],
        )
    return int(raw)


def page(request: Request, items: list[Any]) -> list[Any]:
    """The `limit` (1-100, default 20) / `offset` window of `items`."""
    limit = _int_param(request, "limit", 20, 1, 100)
    offset = _int_param(request, "offset", 0, 0, 1_000_000)
    return items[offset : offset + limit]


class RouteGroup:
    """A set of handlers bound to one FakeHostedAPI."""

    def __init__(self, fake: FakeHostedAPI) -> None:
        self.fake = fake
        self.state = fake.state

    def _scope(self, request: Request) -> KeyScope:
        return self.fake.key_scope(request)

    def _inbox(self, request: Request) -> InboxRecord:
        return self.state.inbox(self._scope(request), request.path_params["inbox_id"])

    @staticmethod
    def _forbid_unless(scope: KeyScope, *kinds: str) -> None:
        if scope.kind not in kinds:
            raise FakeApiError(403, "AUTH_FORBIDDEN", f"a {scope.kind}_ key cannot use this endpoint")
