"""What a test gets back (`Email`), how it says which mail it wants (`MailFilter`), and the two failures.

Pure: no I/O. A text filter matches case-insensitively anywhere in the value; a compiled
`re.Pattern` is searched as it is. The failures are AssertionErrors, so pytest reports them as
failed assertions, and their message names the mail concerned (subject, sender, id).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Email", "MailFilter", "NoEmailError", "TextMatch", "UnexpectedEmailError"]

TextMatch = str | re.Pattern[str] | None


class NoEmailError(AssertionError):
    """No matching email arrived in time."""


class UnexpectedEmailError(AssertionError):
    """A matching email arrived although the test expected none; `email` is the offender."""

    def __init__(self, message: str, email: Email) -> None:
        super().__init__(message)
        self.email = email


@dataclass(frozen=True, slots=True)
class Email:
    """One email the inbox received. `text`/`html` are the parts as sent (lines end in \\n, as the app
    wrote them before SMTP made them \\r\\n); `body` is readable text either way."""

    id: str
    subject: str
    from_address: str
    from_name: str | None = None
    to: tuple[str, ...] = ()
    text: str | None = None
    html: str | None = field(default=None, repr=False)
    received_at: str | None = None

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Email:
        """From a message of the REST API (camelCase)."""
        return cls(
            id=str(data["id"]),
            subject=data.get("subject") or "",
            from_address=data.get("fromAddress") or "",
            from_name=data.get("fromName"),
            to=tuple(data.get("toAddresses") or ()),
            text=_lines(data.get("plainBody")),
            html=_lines(data.get("htmlBody")),
            received_at=data.get("receivedAt") or data.get("createdAt"),
        )

    @property
    def body(self) -> str:
        if self.text and self.text.strip():
            return self.text
        if self.html:
            from mam_mcp.extract import html_to_text

            return html_to_text(self.html)
        return ""

    @property
    def code(self) -> str | None:
        """The one-time code a sign-up or login form would ask for (subject first, then the body), or None."""
        from mam_mcp.extract import extract_code

        return extract_code(self.subject, self.text, self.html)

    @property
    def links(self) -> list[str]:
        """The links worth opening, best first (verify / confirm / magic sign-in), redirects unwrapped."""
        from mam_mcp.extract import extract_links

        return extract_links(self.text, self.html)

    @property
    def link(self) -> str | None:
        """The best of `links`, or None."""
        links = self.links
        return links[0] if links else None

    def describe(self) -> str:
        """One line naming this mail in a failure message."""
        sender = f"{self.from_name} <{self.from_address}>" if self.from_name else self.from_address
        return f"{self.subject!r} from {sender or '(no sender)'} at {self.received_at or '?'} (id {self.id})"


def _lines(part: str | None) -> str | None:
    return part.replace("\r\n", "\n") if part is not None else None


def _matches(value: str, wanted: TextMatch) -> bool:
    if wanted is None:
        return True
    if isinstance(wanted, re.Pattern):
        return wanted.search(value) is not None
    return wanted.casefold() in value.casefold()


def _shown(wanted: str | re.Pattern[str]) -> str:
    return f"/{wanted.pattern}/" if isinstance(wanted, re.Pattern) else repr(wanted)


@dataclass(frozen=True, slots=True)
class MailFilter:
    """Which mail a wait is about; every given part must match (none given: any mail)."""

    from_: TextMatch = None  # the sender's address or display name
    subject: TextMatch = None
    body: TextMatch = None  # the readable text of the body
    where: Callable[[Email], bool] | None = None

    def admits(self, email: Email) -> bool:
        sender = f"{email.from_name or ''} <{email.from_address}>"
        return (
            _matches(sender, self.from_)
            and _matches(email.subject, self.subject)
            and (self.body is None or _matches(email.body, self.body))
            and (self.where is None or bool(self.where(email)))
        )

    def describe(self) -> str:
        parts = [
            f"{name} ~ {_shown(value)}"
            for name, value in (("from", self.from_), ("subject", self.subject), ("body", self.body))
            if value is not None
        ]
        if self.where is not None:
            parts.append(f"where={getattr(self.where, '__name__', 'predicate')}")
        return "email matching " + ", ".join(parts) if parts else "email"
