"""What the fake records about each request, and the scripted answers that replace normal ones."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RecordedRequest", "ScriptedAnswer", "default_error_code"]

_DEFAULT_CODES = {
    400: "VALIDATION_ERROR",
    401: "AUTH_INVALID",
    403: "AUTH_FORBIDDEN",
    404: "NOT_FOUND",
    409: "CONFLICT",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    502: "PROVIDER_ERROR",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}


def default_error_code(status: int) -> str:
    return _DEFAULT_CODES.get(status, "ERROR")


@dataclass(slots=True)
class RecordedRequest:
    """One request as it reached the fake (headers lower-cased, JSON parsed when there was any)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any | None
    scripted: bool = False
    handler_ran: bool = False
    status: int | None = None  # None when the answer was a dropped connection


@dataclass(slots=True)
class ScriptedAnswer:
    """The answer to the next `times` requests matching `method` and `path` (`*` = one segment)."""

    method: str
    path: str
    status: int
    json: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    times: int = 1
    after_handler: bool = False
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        self._pattern = re.compile("^" + re.escape(self.path).replace(r"\*", "[^/]*") + "$")

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and self.method in ("*", method) and bool(self._pattern.match(path))

    def body(self) -> dict[str, Any]:
        if self.json is not None:
            return self.json
        code = default_error_code(self.status)
        return {"error": f"scripted {self.status} {code}", "code": code}
