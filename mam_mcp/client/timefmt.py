"""The wire's time format: ISO-8601 UTC with milliseconds (`...Z`), read leniently.

Plain functions apart from the event models, so a caller that only formats or parses a time
(`wait_for_email`'s cursors) does not import pydantic models at start-up.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["format_time", "parse_time"]


def parse_time(value: str | None) -> datetime | None:
    """An ISO-8601 time from the wire (`...Z` or an offset) as an aware UTC datetime; None if unparsable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def format_time(moment: datetime) -> str:
    """A datetime as the wire's ISO-8601 UTC form with milliseconds (`...Z`), the inverse of `parse_time`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
