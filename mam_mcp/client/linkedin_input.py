"""What the LinkedIn tools accept, checked locally before any request: the value sets of their
arguments and the shape of notes, profile and company URLs, and post / conversation URNs.

Separate from the client and its response models (`linkedin`, `linkedin_models`) so that building
the tools imports only this: the models cost start-up time and are needed by the first request.
Each check raises ValueError (usable as a pydantic AfterValidator).
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = [
    "NOTE_MAX",
    "SESSION_SCOPED_KINDS",
    "SIGNAL_KINDS",
    "WATCHLIST_MAX",
    "Cadence",
    "DatePosted",
    "Intent",
    "Lookback",
    "SignalKind",
    "check_actor_url",
    "check_company_url",
    "check_connection_note",
    "check_conversation_urn",
    "check_post_urn",
    "check_profile_ref",
    "check_profile_url",
    "is_company_url",
]

SignalKind = Literal[
    "keyword", "engagement", "job_change_watchlist", "connection_accepted", "message_received"
]
Intent = Literal["low", "medium", "high"]
Cadence = Literal["daily", "every_12h", "every_6h", "manual"]
Lookback = Literal["past-24h", "past-week", "past-month"]
DatePosted = Literal["past-24h", "past-week", "past-month", "any"]

NOTE_MAX = 200  # LinkedIn's cap on a connection note, in characters AND in UTF-8 bytes
WATCHLIST_MAX = 500
SIGNAL_KINDS = ("keyword", "engagement", "job_change_watchlist", "connection_accepted", "message_received")
SESSION_SCOPED_KINDS = ("connection_accepted", "message_received")

_ASCII_FOR = {
    "\u2014": "-",
    "\u2013": "-",
    "\u2012": "-",
    "\u2212": "-",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u2026": "...",
    "\u00a0": " ",
    "\u2022": "-",
}
_LINKEDIN_HOST = r"^https?://(?:[a-z]{2,3}\.)?linkedin\.com"
_PROFILE_URL = re.compile(_LINKEDIN_HOST + r"/in/[^/?#\s]{2,100}/?(?:[?#]\S*)?$", re.IGNORECASE)
_COMPANY_URL = re.compile(_LINKEDIN_HOST + r"/company/[^/?#\s]{1,100}/?(?:[?#]\S*)?$", re.IGNORECASE)
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_%-]{1,99}$")
_PROFILE_URN = re.compile(r"^urn:li:(?:fsd_profile|fs_miniProfile|fs_profile|member):[A-Za-z0-9_-]{1,100}$")
_POST_URN = re.compile(r"urn:li:(?:activity|ugcPost|share):\d{5,30}")
_CONVERSATION_URN = re.compile(r"^urn:li:[A-Za-z_]{2,40}:\S{1,500}$")


def check_connection_note(note: str) -> str:
    """<= 200 characters AND <= 200 UTF-8 bytes, with a message an agent can act on."""
    chars, size = len(note), len(note.encode("utf-8"))
    if chars <= NOTE_MAX and size <= NOTE_MAX:
        return note
    if chars > NOTE_MAX:
        raise ValueError(
            f"the note is {chars} characters ({size} UTF-8 bytes); LinkedIn allows at most {NOTE_MAX}. Shorten it"
        )
    head = (
        f"the note is {chars} characters but {size} UTF-8 bytes; LinkedIn allows at most {NOTE_MAX} bytes "
        "(em-dashes, smart quotes and emoji take 2-4 bytes each)"
    )
    fancy = sorted({ch for ch in note if ch in _ASCII_FOR})
    if not fancy:
        raise ValueError(f"{head}. Shorten it or drop the emoji/accented characters")
    ascii_size = len("".join(_ASCII_FOR.get(ch, ch) for ch in note).encode("utf-8"))
    swaps = ", ".join(f"{ch} -> {_ASCII_FOR[ch]!r}" for ch in fancy)
    outcome = f"that makes it {ascii_size} bytes" + (
        " and it fits" if ascii_size <= NOTE_MAX else "; shorten it too"
    )
    raise ValueError(f"{head}. Use ASCII replacements ({swaps}): {outcome}")


def check_profile_url(value: str) -> str:
    value = value.strip()
    if not _PROFILE_URL.match(value):
        raise ValueError("not a LinkedIn profile URL (expected https://www.linkedin.com/in/<slug>/)")
    return value


def check_company_url(value: str) -> str:
    value = value.strip()
    if not _COMPANY_URL.match(value):
        raise ValueError("not a LinkedIn company URL (expected https://www.linkedin.com/company/<slug>/)")
    return value


def is_company_url(value: str) -> bool:
    return _COMPANY_URL.match(value.strip()) is not None


def check_actor_url(value: str) -> str:
    """A profile (/in/) or company (/company/) URL."""
    value = value.strip()
    if not (_PROFILE_URL.match(value) or _COMPANY_URL.match(value)):
        raise ValueError(
            "expected a LinkedIn profile (https://www.linkedin.com/in/<slug>/) or company "
            "(https://www.linkedin.com/company/<slug>/) URL"
        )
    return value


def check_profile_ref(value: str) -> str:
    """A profile URL, a public slug, an ACoA... profile id, or a profile URN."""
    value = value.strip()
    if _PROFILE_URL.match(value) or _SLUG.match(value) or _PROFILE_URN.match(value):
        return value
    raise ValueError(
        "expected a LinkedIn profile URL (https://www.linkedin.com/in/<slug>/), a slug, "
        "an ACoA... profile id or a profile URN"
    )


def check_post_urn(value: str) -> str:
    """A post URN (urn:li:activity:<digits>, ugcPost, share), also found inside a post URL."""
    found = _POST_URN.search(value.strip())
    if not found or (not value.strip().startswith("urn:") and "linkedin.com/" not in value):
        raise ValueError(
            "expected a post URN like urn:li:activity:7332661864792854528 (or a post URL containing one)"
        )
    return found.group(0)


def check_conversation_urn(value: str) -> str:
    value = value.strip()
    if not _CONVERSATION_URN.match(value):
        raise ValueError("expected a conversation URN (urn:li:...) as returned by the conversations list")
    return value
