"""A message as the console shows it: headers, text, what `wait_for_email` would extract, attachments,
and the HTML body as a document that cannot run anything or call out.

The HTML body is served as its own document, framed by the console in an iframe with `sandbox` (no
scripts, no forms, no same-origin) and answered with a Content-Security-Policy that repeats the
sandbox and lets nothing load but inline styles and `data:` images: remote images (tracking
pixels), stylesheets, fonts and frames are blocked until the person asks for images, and then
only images are allowed. Links open in a new tab, without a referrer.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from mam_mcp.extract import extract_code, extract_links, html_to_text
from mam_mcp.local.mime.parse import header_fields

__all__ = [
    "HTML_CSP",
    "HTML_CSP_WITH_IMAGES",
    "headers_of_raw",
    "html_document",
    "message_view",
]

_COMMON_CSP = (
    "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; style-src 'unsafe-inline';"
    " font-src data:; media-src data:; form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
)
HTML_CSP = _COMMON_CSP + "; img-src data:"
HTML_CSP_WITH_IMAGES = _COMMON_CSP + "; img-src data: http: https:"

INLINE_IMAGE_BYTES = 2 * 1024 * 1024  # a cid: image larger than this stays a broken image
INLINE_TOTAL_BYTES = 10 * 1024 * 1024
MAX_HEADERS = 200

# What we put before the mail's own markup: the first <base target> wins, so links open a new tab.
_PREAMBLE = (
    '<!DOCTYPE html><meta charset="utf-8"><meta name="referrer" content="no-referrer">'
    '<base target="_blank"><style>body{margin:8px;overflow-wrap:anywhere}</style>\n'
)
# A refresh would navigate the frame to any URL without a script; the CSP cannot block navigation.
_REFRESH = re.compile(r"<meta\b[^>]*http-equiv\s*=\s*['\"]?\s*refresh[^>]*>", re.IGNORECASE)
_CID = re.compile(r"cid:([^\s\"'<>)]+)", re.IGNORECASE)


def headers_of_raw(raw: bytes) -> list[list[str]]:
    """The header fields of a stored message source, decoded, in order (no copy of them is stored:
    the raw source has them)."""
    return [[name, value] for name, value in header_fields(raw)[:MAX_HEADERS]]


def message_view(row: dict[str, Any], headers: list[list[str]], delivery: dict[str, Any]) -> dict[str, Any]:
    """The JSON the console renders for one message (bodies as text: the page never sets HTML)."""
    plain = row.get("plain_body")
    html = row.get("html_body")
    text = plain if (plain or "").strip() else (html_to_text(html) if html else "")
    return {
        "id": row["id"],
        "inboxId": row["inbox_id"],
        "threadId": row["thread_id"],
        "direction": row["direction"],
        "status": row["status"],
        "from": row["from_address"],
        "fromName": row["from_name"],
        "to": json.loads(row["to_json"] or "[]"),
        "cc": json.loads(row["cc_json"] or "[]"),
        "bcc": json.loads(row["bcc_json"] or "[]") if row["direction"] == "outbound" else [],
        "subject": row["subject"] or "",
        "isRead": bool(row["is_read"]),
        "at": row["at"],
        "sentAt": row["sent_at"],
        "receivedAt": row["received_at"],
        "text": text,
        "hasHtml": bool(html and html.strip()),
        "headers": headers,
        "attachments": [
            {"id": a["id"], "filename": a["filename"], "contentType": a["content_type"], "size": a["size"]}
            for a in row.get("attachments", [])
        ],
        # What wait_for_email would hand the agent from this mail.
        "extracted": {
            "code": extract_code(row["subject"], plain, html),
            "links": extract_links(plain, html),
        },
        "delivery": delivery,
    }


def inline_images(html: str, images: dict[str, tuple[str, bytes]]) -> str:
    """`cid:` references replaced by `data:` URIs of the message's own inline parts (bounded in size)."""
    budget = INLINE_TOTAL_BYTES
    uris: dict[str, str] = {}
    for content_id, (content_type, data) in images.items():
        if len(data) > INLINE_IMAGE_BYTES or len(data) > budget or not content_type.lower().startswith("image/"):
            continue
        budget -= len(data)
        uris[content_id.strip("<>").lower()] = f"data:{content_type};base64,{base64.b64encode(data).decode()}"

    def swap(match: re.Match[str]) -> str:
        return uris.get(match.group(1).strip("<>").lower(), "data:,")

    return _CID.sub(swap, html) if uris or "cid:" in html.lower() else html


def html_document(html: str) -> bytes:
    """The mail's HTML as a document for the sandboxed frame (served with HTML_CSP)."""
    return (_PREAMBLE + _REFRESH.sub("", html)).encode("utf-8")
