"""The testing toolset (not default): review an app's mail the way a careful reviewer would."""

from functools import partial
from typing import Any

import anyio
from mcp_types import CallToolResult

from mam_mcp.toolkit.arguments import InboxId, MessageId
from mam_mcp.toolkit.results import UNTRUSTED_NOTE, UntrustedFence, ok
from mam_mcp.toolkit.runtime import Runtime
from mam_mcp.toolkit.toolsets import READ, Toolset

toolset = Toolset("testing", "Check an app's mail: structure, links, unsubscribe headers, DKIM.")

LINKS_SHOWN = 5
LABEL = {"fail": "FAIL", "warn": "WARN", "note": "NOTE"}


def _link_line(link: dict[str, Any]) -> str:
    text = " ".join(link["text"].split())[:60] or "(no text)"
    goes_to = link["destination"].split("://", 1)[-1].split("/", 1)[0] or link["href"][:60]
    return f'"{text}" -> {goes_to}' + (f" [text shows {link['shown_host']}]" if link["mismatch"] else "")


def _text(message_id: str, review: dict[str, Any]) -> str:
    checks = review["checks"]
    counts = (
        f"{review['failed']} problem(s), {review['warnings']} to look at, {review['notes']} note(s), "
        f"{review['passed']} passed"
    )
    lines = [f"Checked message {message_id} ({review['size_bytes']:,} bytes): {counts}."]
    lines += [f"{LABEL[c['status']]} {c['id']}: {c['summary']}" for c in checks if c["status"] != "pass"]
    passed = [c["id"] for c in checks if c["status"] == "pass"]
    if passed:
        lines.append(f"Passed: {', '.join(passed)}.")
    # What the mail says (hosts, link texts, header values) stays inside the fence.
    quoted = [f"{c['id']}: {detail}" for c in checks if c["status"] != "pass" for detail in c["details"]]
    links = review["links"]
    if links:
        shown = "; ".join(_link_line(link) for link in links[:LINKS_SHOWN])
        more = f" (+{len(links) - LINKS_SHOWN} more)" if len(links) > LINKS_SHOWN else ""
        quoted.append(f"links ({len(links)}): {shown}{more}")
    if quoted:
        lines.append(UNTRUSTED_NOTE)
        lines.append(UntrustedFence().wrap("\n".join(quoted)))
    return "\n".join(lines)


@toolset.tool(title="Check message", annotations=READ)
async def check_message(rt: Runtime, inbox_id: InboxId, message_id: MessageId) -> CallToolResult:
    """Review a received email from its raw source like a careful reviewer: text part, HTML, image alt text, links whose text shows another site, List-Unsubscribe (one-click), Message-ID/Date/From, Reply-To, size, DKIM. Problems first."""
    raw = await (await rt.client()).messages.raw(inbox_id, message_id)
    from mam_mcp.mail_review import review_message  # lazy: dkimpy and dnspython load only when used

    # DKIM key lookups block on DNS: off the event loop
    review = await anyio.to_thread.run_sync(partial(review_message, raw.content, dns_txt=rt.dkim_txt_lookup))
    data = {"inbox_id": inbox_id, "message_id": message_id, **review.as_dict(), "untrusted": True}
    return ok(_text(message_id, data), data)


__all__ = ["toolset"]
