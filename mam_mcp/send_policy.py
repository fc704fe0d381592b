"""What the person running mam-mcp allows the agent to send: consent mode and outbound policy.

Both come from the config file, the environment and flags (config.py resolves them once); no tool
can change them. The checks here are pure: the tools apply them to the exact message a send would
put on the wire (its preview), on every send route, in both modes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["CONFIRM_MODES", "SETTING_NAMES", "ConfirmSends", "OutboundPolicy", "matches"]

ConfirmSends = Literal["off", "new-recipients", "all"]
CONFIRM_MODES: tuple[ConfirmSends, ...] = ("off", "new-recipients", "all")

# Where each setting is written, for hints that tell the agent who can change what (the agent cannot).
SETTING_NAMES = {
    "allow": ("outbound.allow", "MAM_OUTBOUND_ALLOW", "--allow-recipients"),
    "block": ("outbound.block", "MAM_OUTBOUND_BLOCK", "--block-recipients"),
    "max_recipients": ("outbound.max_recipients", "MAM_OUTBOUND_MAX_RECIPIENTS", "--max-recipients"),
    "sends_per_hour": ("outbound.sends_per_hour", "MAM_OUTBOUND_SENDS_PER_HOUR", "--sends-per-hour"),
    "reply_only": ("outbound.reply_only", "MAM_OUTBOUND_REPLY_ONLY", "--reply-only"),
}


def matches(address: str, entries: Sequence[str]) -> bool:
    """An entry with `@` is one address; otherwise a domain, which covers its subdomains too."""
    address = address.strip().lower()
    domain = address.rpartition("@")[2]
    for entry in entries:
        entry = entry.strip().lower()
        if "@" in entry:
            if address == entry:
                return True
        elif domain == entry or domain.endswith("." + entry):
            return True
    return False


class OutboundPolicy(BaseModel):
    """Limits on what leaves; an empty policy allows everything the recipient rule allows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allow: tuple[str, ...] = ()  # when set, every recipient must match one entry
    block: tuple[str, ...] = ()  # a match here refuses the send, whatever `allow` says
    max_recipients: int | None = Field(default=None, ge=1, le=50)
    sends_per_hour: int | None = Field(default=None, ge=1, le=1000)  # per inbox, sliding hour
    reply_only: bool = False  # only replies within existing threads

    @field_validator("allow", "block", mode="before")
    @classmethod
    def _entries(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in value.split(",")]
        if isinstance(value, list | tuple):
            entries = tuple(str(item).strip().lower() for item in value if str(item).strip())
            bad = [e for e in entries if " " in e or e.startswith("@") or e.endswith("@") or "." not in e]
            if bad:
                raise ValueError(f"not an address or domain: {bad[0][:80]!r} (write jane@example.com or example.com)")
            return entries
        return value

    @property
    def active(self) -> bool:
        return bool(self.allow or self.block or self.max_recipients or self.sends_per_hour or self.reply_only)

    def recipient_problem(self, recipients: Sequence[str]) -> tuple[str, str, list[str]] | None:
        """(what is wrong, the setting that says so, the recipients concerned) for a message's full
        recipient list, or None. The text names no address: some come from mail being answered."""
        if self.max_recipients is not None and len(recipients) > self.max_recipients:
            return (
                f"{len(recipients)} recipients, more than the {self.max_recipients} this server allows per message",
                "max_recipients",
                [],
            )
        blocked = [r for r in recipients if matches(r, self.block)]
        if blocked:
            return f"{_count(blocked)} on the blocked list", "block", blocked
        if self.allow:
            outside = [r for r in recipients if not matches(r, self.allow)]
            if outside:
                listed = ", ".join(self.allow[:5]) + (", ..." if len(self.allow) > 5 else "")
                return f"{_count(outside)} not on the allowed list ({listed})", "allow", outside
        return None

    def describe(self) -> list[str]:
        """One line per rule in force, for `doctor` and the README."""
        lines = []
        if self.allow:
            lines.append(f"only to: {', '.join(self.allow)}")
        if self.block:
            lines.append(f"never to: {', '.join(self.block)}")
        if self.max_recipients is not None:
            lines.append(f"at most {self.max_recipients} recipients per message")
        if self.sends_per_hour is not None:
            lines.append(f"at most {self.sends_per_hour} sends per inbox per hour")
        if self.reply_only:
            lines.append("replies within existing threads only")
        return lines or ["no limits beyond the recipient rule"]


def _count(addresses: Sequence[str]) -> str:
    return "1 recipient is" if len(addresses) == 1 else f"{len(addresses)} recipients are"
