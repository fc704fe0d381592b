"""Timestamps as the local backend stores and sends them: ISO-8601 UTC, milliseconds, a `Z`."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["iso_from_epoch", "iso_utc", "utc_now_iso"]


def iso_utc(moment: datetime) -> str:
    """`moment` in the wire format (an aware datetime; shown in UTC)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now_iso() -> str:
    """Now, in the wire format."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_from_epoch(seconds: float) -> str:
    """A Unix time, in the wire format."""
    return iso_utc(datetime.fromtimestamp(seconds, UTC))
