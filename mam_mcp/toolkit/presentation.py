"""How a message reads to an agent: the list-view summary, the sender line, the readable body
(plain text, or HTML converted; quoted history stripped; capped), and paging information.
Callers fence what comes from the mail (toolkit.results.UntrustedFence).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from mam_mcp.toolkit.send_status import STATUS_HINTS

if TYPE_CHECKING:
    from mam_mcp.client.models import Message

__all__ = [
    "PREVIEW_CHARS",
    "body_text",
    "html_to_text",
    "page_info",
    "sender",
    "strip_quoted",
    "summarize",
]

PREVIEW_CHARS = 160
_LISTED_STATUS_HINTS = ("queued", "relaying", "unknown", "failed", "partial")  # an outbound send still to watch


def _one_line(text: str | None, limit: int) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


_REPLY_HEADER = re.compile(
    r"^\s*(On\s.{0,200}\swrote:|Am\s.{0,200}\sschrieb\s?.{0,80}:|Le\s.{0,200}\sa\sécrit\s?:|El\s.{0,200}\sescribió:"
    r"|-{2,}\s*Original Message\s*-{2,}|-{2,}\s*Forwarded message\s*-{2,}|_{10,}\s*$)",
    re.IGNORECASE,
)
_OUTLOOK_HEADER = re.compile(r"^\s*From:\s.+", re.IGNORECASE)


def html_to_text(html: str) -> str:
    from mam_mcp.extract import html_to_text as convert  # lazy: its patterns cost start-up time

    return convert(html)


def strip_quoted(text: str) -> tuple[str, bool]:
    """Cut quoted reply history (`> ...`, "On ... wrote:", Outlook headers). Returns (text, stripped)."""
    lines = text.splitlines()
    cut = len(lines)
    for index, line in enumerate(lines):
        joined = line if not line.rstrip().endswith(",") else line + " " + (lines[index + 1] if index + 1 < len(lines) else "")
        if _REPLY_HEADER.match(line) or _REPLY_HEADER.match(joined):
            cut = index
            break
        if _OUTLOOK_HEADER.match(line) and any(
            re.match(r"^\s*(Sent|Date):\s", nxt, re.IGNORECASE) for nxt in lines[index + 1 : index + 3]
        ):
            cut = index
            break
        if line.startswith(">") and all(not ln.strip() or ln.startswith(">") for ln in lines[index:]):
            cut = index
            break
    kept = "\n".join(lines[:cut]).rstrip()
    if not kept and cut < len(lines):
        return text.strip(), False  # nothing but quote: keep it all rather than return nothing
    return kept, cut < len(lines)


def body_text(message: Message, *, max_chars: int, strip_quotes: bool = True) -> dict[str, Any]:
    """The readable body of a message: plain text (or HTML converted), quotes stripped, capped."""
    text = message.plain_body or ""
    source = "plain"
    if not text.strip() and message.html_body:
        text, source = html_to_text(message.html_body), "html"
    quoted_stripped = False
    if strip_quotes and text:
        text, quoted_stripped = strip_quoted(text)
    truncated = len(text) > max_chars
    if truncated:
        text = text[:max_chars]
    return {
        "text": text,
        "source": source,
        "quoted_history_stripped": quoted_stripped,
        "truncated": truncated,
        "total_chars": len(message.plain_body or message.html_body or ""),
    }


def sender(message: Message) -> str:
    """`Name <address>` for a From line, or just the address when there is no display name."""
    name, address = (message.from_name or "").strip(), message.from_address or ""
    return f"{name} <{address}>" if name else address


def summarize(message: Message) -> dict[str, Any]:
    """The list-view summary of a message (DESIGN §4 output conventions)."""
    preview_source = message.plain_body or ""
    if not preview_source.strip() and message.html_body:
        preview_source = html_to_text(message.html_body)
    has_attachments = bool(message.has_attachments) or bool(message.attachments)
    return {
        "id": message.id,
        "thread_id": message.thread_id,
        "direction": message.direction,
        "from": message.from_address,
        "from_name": message.from_name,
        "to": message.to_addresses,
        "subject": message.subject,
        "date": message.date,
        "read": message.is_read,
        "has_attachments": has_attachments,
        "preview": _one_line(preview_source, PREVIEW_CHARS),
        **({"tag": message.tag} if message.tag else {}),  # local: the plus-address tag it came with
        **({"status": message.status} if message.status else {}),
        **({"status_hint": STATUS_HINTS[message.status]} if message.status in _LISTED_STATUS_HINTS else {}),
    }


def page_info(count: int, limit: int, offset: int) -> dict[str, Any]:
    """`limit`/`offset` paging: `next_offset` when a full page came back (more may exist)."""
    info: dict[str, Any] = {"limit": limit, "offset": offset, "count": count}
    if count >= limit:
        info["next_offset"] = offset + limit
    return info
