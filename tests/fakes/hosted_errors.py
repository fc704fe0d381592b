"""Errors of the fake hosted API: one exception type that renders as the reference's error body."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

__all__ = ["FakeApiError", "error_response"]


class FakeApiError(Exception):
    """Raised by handlers; the strict gate turns it into `{"error", "code"[, "details"]}`."""

    def __init__(
        self, status: int, code: str, message: str, *, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return error_response(self.status, self.code, self.message, details=self.details, headers=headers)


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": message, "code": code}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)
