"""The one error type of the service layer: an API error the REST layer renders as `{"error", "code"}`."""

from __future__ import annotations

__all__ = ["BackendError"]


class BackendError(Exception):
    """An API error: HTTP status, machine code, human message (no secrets), optional details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    @classmethod
    def validation(cls, path: str, message: str) -> BackendError:
        return cls(
            400, "VALIDATION_ERROR", f"{path}: {message}", details=[{"path": path, "message": message}]
        )

    @classmethod
    def not_found(cls, what: str) -> BackendError:
        return cls(404, "NOT_FOUND", f"{what} not found")
