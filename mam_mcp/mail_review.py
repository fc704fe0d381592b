"""What a careful reviewer of an app's mail checks, from its raw source (for `check_message`).

Pure apart from DKIM key lookups (`dkim_check`, injectable). Each check has a status (fail /
warn / note / pass), a summary in our own words, and details that quote the mail (hosts, link
texts, header values): callers show details only inside an untrusted-content fence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from mam_mcp.dkim_check import DkimResult, TxtLookup, organizational_domain, verify_signatures
from mam_mcp.extract import extract_link_details
from mam_mcp.link_wrappers import unwrap_link

__all__ = ["ReviewCheck", "LinkReport", "Review", "review_message"]

STATUS_ORDER = ("fail", "warn", "note", "pass")
MAX_LINKS = 50
MAX_DETAILS = 8
GMAIL_CLIP_BYTES = 102 * 1024  # Gmail cuts HTML bodies above this and shows "[Message clipped]"
SIZE_WARN_BYTES = 10 * 1024 * 1024  # many receivers refuse more than 10-25 MB
SIZE_FAIL_BYTES = 25 * 1024 * 1024
DATE_FUTURE_SLACK = timedelta(minutes=15)
_VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
_OPTIONAL_END = frozenset(
    "p li dt dd tr td th thead tbody tfoot option optgroup colgroup caption rb rt rp html head body".split()
)
_ADDRESS = re.compile(
    r"^[^@\s]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
_MESSAGE_ID = re.compile(r"^<[^<>@\s]+@[^<>@\s]+>$")
# link text that shows a host: "https://acme.example/x", "www.acme.example", "acme.com/verify"
_SHOWN_URL = re.compile(r"^(?:https?://|www\.)([^\s/:?#]+)", re.IGNORECASE)
_SHOWN_DOMAIN = re.compile(
    r"^((?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:com|net|org|io|co|ai|app|dev|edu|gov|info|biz|me|us|uk|de|"
    r"fr|es|it|nl|se|no|dk|fi|pl|ch|at|be|eu|ca|au|nz|jp|in|br|mx|ru|cn|ie|pt))(?:[/:?#]\S*)?$",
    re.IGNORECASE,
)
_BULK_HEADERS = ("list-id", "list-unsubscribe", "feedback-id")


@dataclass(frozen=True)
class ReviewCheck:
    """One check of a mail review: its verdict, our summary, and what it quotes from the mail."""

    id: str
    status: str  # fail | warn | note | pass
    summary: str  # our own words: safe outside the fence
    details: tuple[str, ...] = ()  # quotes the mail: inside the fence only

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "summary": self.summary, "details": list(self.details)}


@dataclass(frozen=True)
class LinkReport:
    text: str
    href: str
    host: str
    destination: str  # href unwrapped from Safe Links / Google / URL Defense / ...
    shown_host: str | None  # the host the text shows, when it shows one
    mismatch: bool  # the text shows one site, the link goes to another

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "href": self.href,
            "host": self.host,
            "destination": self.destination,
            "shown_host": self.shown_host,
            "mismatch": self.mismatch,
        }


@dataclass
class Review:
    size_bytes: int
    checks: list[ReviewCheck]
    links: list[LinkReport] = field(default_factory=list)
    dkim: list[DkimResult] = field(default_factory=list)
    parts: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, Any] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "size_bytes": self.size_bytes,
            "failed": self.count("fail"),
            "warnings": self.count("warn"),
            "notes": self.count("note"),
            "passed": self.count("pass"),
            "checks": [c.as_dict() for c in self.checks],
            "links": [link.as_dict() for link in self.links],
            "dkim": [d.as_dict() for d in self.dkim],
            "parts": self.parts,
            "headers": self.headers,
        }


# --- HTML --------------------------------------------------------------------------------------


class _HtmlScan(HTMLParser):
    """One pass over the HTML: structure problems, images and their alt, anchors and their text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.images: list[tuple[str, str | None, bool]] = []  # (src, alt, is a tracking pixel)
        self.anchors: list[tuple[str, str]] = []
        self._open: list[str] = []
        self._anchor: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            size = {values.get("width"), values.get("height")}
            pixel = size <= {"0", "1", "0px", "1px"} and None not in size
            self.images.append((values.get("src") or "", values.get("alt"), pixel))
            if self._anchor is not None and values.get("alt"):
                self._anchor[1].append(values["alt"] or "")
        if tag == "a" and values.get("href"):
            self._end_anchor()
            self._anchor = ((values["href"] or "").strip(), [])
        if tag not in _VOID:
            self._open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID and self._open and self._open[-1] == tag:
            self._open.pop()  # <div/>: opened and closed at once

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._end_anchor()
        if tag in _VOID:
            return
        if tag not in self._open:
            self._problem(f"stray </{tag}>")
            return
        while self._open:
            top = self._open.pop()
            if top == tag:
                break
            if top not in _OPTIONAL_END:
                self._problem(f"<{top}> not closed before </{tag}>")

    def handle_data(self, data: str) -> None:
        if self._anchor is not None:
            self._anchor[1].append(data)

    def close(self) -> None:
        super().close()
        self._end_anchor()
        for tag in self._open:
            if tag not in _OPTIONAL_END:
                self._problem(f"<{tag}> never closed")

    def _end_anchor(self) -> None:
        if self._anchor is not None:
            href, texts = self._anchor
            self.anchors.append((href, " ".join(" ".join(texts).split())[:200]))
            self._anchor = None

    def _problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)


# --- the parts of a message ------------------------------------------------------------------


def _body_parts(message: Message) -> tuple[str | None, str | None, list[dict[str, Any]]]:
    """(text, html, every leaf part's type / size / filename)."""
    text = html = None
    parts: list[dict[str, Any]] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        content_type = part.get_content_type()
        filename = part.get_filename()
        parts.append({"content_type": content_type, "size": size, "filename": filename})
        if filename or part.get_content_disposition() == "attachment" or not isinstance(payload, bytes):
            continue
        charset = part.get_content_charset() or "utf-8"
        try:
            decoded = payload.decode(charset, errors="replace")
        except LookupError:  # an unknown charset name
            decoded = payload.decode("utf-8", errors="replace")
        if content_type == "text/plain" and text is None:
            text = decoded
        elif content_type == "text/html" and html is None:
            html = decoded
    return text, html, parts


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _shown_host(text: str) -> str | None:
    text = text.strip().rstrip(".,;:")
    match = _SHOWN_URL.match(text) or _SHOWN_DOMAIN.match(text)
    return match.group(1).lower().removeprefix("www.") if match else None


def _link_reports(anchors: list[tuple[str, str]], text: str | None) -> list[LinkReport]:
    found = list(anchors)
    if not found and text:  # a text-only mail: its URLs, each showing itself
        found = [(url, url) for url in re.findall(r"https?://[^\s<>\"']+", text)]
    reports = []
    for href, shown_text in found[:MAX_LINKS]:
        destination, _ = unwrap_link(href)
        host, destination_host = _host(href), _host(destination)
        shown = _shown_host(shown_text)
        mismatch = bool(
            shown
            and destination_host
            and organizational_domain(shown) != organizational_domain(destination_host)
        )
        reports.append(LinkReport(shown_text, href, host, destination, shown, mismatch))
    return reports


# --- checks ------------------------------------------------------------------------------------


def _check_text_part(text: str | None, html: str | None) -> ReviewCheck:
    if text is not None and text.strip():
        return ReviewCheck("text_part", "pass", "a plain-text part is there")
    if html is not None:
        return ReviewCheck(
            "text_part", "warn", "HTML only: no plain-text alternative (text clients and spam filters mind)"
        )
    return ReviewCheck("text_part", "fail", "no readable body: neither a text nor an HTML part")


def _check_html(html: str | None, scan: _HtmlScan) -> ReviewCheck:
    if html is None:
        return ReviewCheck("html", "note", "no HTML part")
    if not scan.problems:
        return ReviewCheck("html", "pass", "the HTML parses with balanced tags")
    summary = f"the HTML has {len(scan.problems)} structure problem(s) (unclosed or stray tags)"
    return ReviewCheck("html", "warn", summary, tuple(scan.problems[:MAX_DETAILS]))


def _check_images(scan: _HtmlScan) -> ReviewCheck:
    images = [(src, alt) for src, alt, pixel in scan.images if not pixel]
    missing = [src for src, alt in images if alt is None]
    if not missing:
        return ReviewCheck(
            "images_alt", "pass", f"all {len(images)} image(s) have alt text" if images else "no images"
        )
    details = tuple(
        src.rsplit("/", 1)[-1][:80] + f" ({_host(src) or 'inline'})" for src in missing[:MAX_DETAILS]
    )
    return ReviewCheck(
        "images_alt", "warn", f"{len(missing)} of {len(images)} image(s) have no alt attribute", details
    )


def _check_links(links: list[LinkReport]) -> ReviewCheck:
    wrong = [link for link in links if link.mismatch]
    if not wrong:
        return ReviewCheck("links", "pass", f"{len(links)} link(s); none shows one site and goes to another")
    details = tuple(f"text shows {w.shown_host}, goes to {_host(w.destination)}" for w in wrong[:MAX_DETAILS])
    return ReviewCheck(
        "links", "fail", f"{len(wrong)} link(s) show one site in their text but go to another", details
    )


def _check_unsubscribe(message: Message, text: str | None, html: str | None, dkim: list[DkimResult]) -> ReviewCheck:
    header = str(message.get("List-Unsubscribe") or "")
    post = str(message.get("List-Unsubscribe-Post") or "")
    precedence = str(message.get("Precedence") or "").strip().lower()
    linked = any(d.kind == "unsubscribe" for d in extract_link_details(text, html))
    bulk = linked or precedence in ("bulk", "list", "junk") or any(message.get(h) for h in _BULK_HEADERS)
    details = tuple(
        v
        for v in (
            header and f"List-Unsubscribe: {header[:200]}",
            post and f"List-Unsubscribe-Post: {post[:80]}",
        )
        if v
    )
    if not header:
        if bulk:
            return ReviewCheck("list_unsubscribe", "fail", "bulk-looking mail without a List-Unsubscribe header")
        return ReviewCheck(
            "list_unsubscribe", "note", "no List-Unsubscribe; not needed: the mail does not look bulk"
        )
    uris = re.findall(r"<([^>]+)>", header)
    https = [u for u in uris if u.lower().startswith("https://")]
    one_click = post.strip().lower().replace(" ", "") == "list-unsubscribe=one-click"
    if one_click and not https:
        return ReviewCheck(
            "list_unsubscribe", "fail", "one-click (RFC 8058) is declared but there is no https URI", details
        )
    if not one_click:
        status = "warn" if bulk else "note"
        return ReviewCheck(
            "list_unsubscribe",
            status,
            "List-Unsubscribe without RFC 8058 one-click (List-Unsubscribe-Post)",
            details,
        )
    verified = [d for d in dkim if d.result == "verified"]
    if verified and not any(
        {"list-unsubscribe", "list-unsubscribe-post"} <= set(d.signed_headers) for d in verified
    ):
        summary = "one-click unsubscribe, but no verified DKIM signature covers both List-Unsubscribe headers"
        return ReviewCheck("list_unsubscribe", "warn", summary, details)
    return ReviewCheck("list_unsubscribe", "pass", "List-Unsubscribe with RFC 8058 one-click", details)


def _single(message: Message, name: str) -> tuple[Any, ReviewCheck | None]:
    values = message.get_all(name) or []
    check_id = name.lower().replace("-", "_")
    if not values:
        return None, ReviewCheck(check_id, "fail", f"no {name} header")
    if len(values) > 1:
        return None, ReviewCheck(
            check_id,
            "fail",
            f"{len(values)} {name} headers (there must be one)",
            tuple(str(v)[:200] for v in values),
        )
    return values[0], None


def _check_message_id(message: Message) -> ReviewCheck:
    value, problem = _single(message, "Message-ID")
    if problem:
        return problem
    text = str(value).strip()
    if not _MESSAGE_ID.match(text):
        return ReviewCheck("message_id", "fail", "the Message-ID is not <left@right>", (text[:200],))
    if "." not in text.rsplit("@", 1)[1]:
        return ReviewCheck("message_id", "warn", "the Message-ID's right side is not a domain name", (text[:200],))
    return ReviewCheck("message_id", "pass", "one well-formed Message-ID")


def _check_date(message: Message, now: datetime) -> ReviewCheck:
    value, problem = _single(message, "Date")
    if problem:
        return problem
    when = getattr(value, "datetime", None)
    if when is None or getattr(value, "defects", None):
        return ReviewCheck(
            "date", "fail", "the Date header does not parse as an RFC 5322 date", (str(value)[:200],)
        )
    if when.tzinfo is None:
        return ReviewCheck("date", "warn", "the Date has no time zone (-0000)", (str(value)[:200],))
    if when - now > DATE_FUTURE_SLACK:
        return ReviewCheck("date", "warn", "the Date is in the future", (str(value)[:200],))
    return ReviewCheck("date", "pass", "one valid Date")


def _addresses(value: Any) -> list[str]:
    return [f"{a.username}@{a.domain}" for a in getattr(value, "addresses", ())]


def _check_from(message: Message) -> tuple[ReviewCheck, list[str]]:
    value, problem = _single(message, "From")
    if problem:
        return problem, []
    addresses = _addresses(value)
    bad = [a for a in addresses if not _ADDRESS.match(a)]
    if not addresses or bad or getattr(value, "defects", None):
        return ReviewCheck("from", "fail", "the From header is not a valid address", (str(value)[:200],)), []
    if len(addresses) > 1:
        return ReviewCheck(
            "from", "warn", "From names several mailboxes (needs a Sender header)", (str(value)[:200],)
        ), addresses
    return ReviewCheck("from", "pass", "one valid From address"), addresses


def _check_reply_to(message: Message, senders: list[str]) -> ReviewCheck:
    value = message.get("Reply-To")
    if value is None:
        return ReviewCheck("reply_to", "pass", "no Reply-To: replies go to From")
    replies = [a.lower() for a in _addresses(value)]
    if replies and set(replies) <= {s.lower() for s in senders}:
        return ReviewCheck("reply_to", "pass", "Reply-To is the From address")
    return ReviewCheck(
        "reply_to",
        "note",
        "Reply-To differs from From: replies go elsewhere",
        (f"From: {', '.join(senders)}", f"Reply-To: {str(value)[:200]}"),
    )


def _check_size(size: int, parts: list[dict[str, Any]]) -> ReviewCheck:
    largest = max(parts, key=lambda p: p["size"], default=None)
    summary = f"{size:,} bytes in total" + (
        f"; largest part {largest['content_type']} of {largest['size']:,} bytes" if largest else ""
    )
    html_sizes = [p["size"] for p in parts if p["content_type"] == "text/html" and not p["filename"]]
    details = (f"largest part: {largest['filename']}",) if largest and largest["filename"] else ()
    if size > SIZE_FAIL_BYTES:
        return ReviewCheck("size", "fail", summary + "; over 25 MB, which most receivers refuse", details)
    if size > SIZE_WARN_BYTES:
        return ReviewCheck("size", "warn", summary + "; over 10 MB, which some receivers refuse", details)
    if html_sizes and max(html_sizes) > GMAIL_CLIP_BYTES:
        return ReviewCheck("size", "warn", summary + "; the HTML is over 102 KB, so Gmail clips it", details)
    return ReviewCheck("size", "pass", summary, details)


def _check_dkim(dkim: list[DkimResult]) -> ReviewCheck:
    if not dkim:
        return ReviewCheck(
            "dkim", "warn", "no DKIM-Signature: receivers cannot tie the mail to the sender's domain"
        )
    details = tuple(
        f"d={d.domain} s={d.selector}: {d.result}, {d.reason}"
        + ("" if d.aligned else " (not aligned with From)")
        for d in dkim
    )
    verified = [d for d in dkim if d.result == "verified"]
    if any(d.aligned for d in verified):
        return ReviewCheck("dkim", "pass", "DKIM signature verified and aligned with the From domain", details)
    if verified:
        return ReviewCheck(
            "dkim",
            "warn",
            "DKIM verified, but for another domain than From's (DMARC needs alignment)",
            details,
        )
    if any(d.result == "failed" for d in dkim):
        return ReviewCheck("dkim", "fail", "DKIM signature does not verify", details)
    return ReviewCheck(
        "dkim", "note", "DKIM-Signature present, not verified (its key could not be looked up)", details
    )


def review_message(raw: bytes, *, dns_txt: TxtLookup | None = None, now: datetime | None = None) -> Review:
    """Check a raw RFC 5322 message. `dns_txt` looks up DKIM keys (default: DNS); `now` dates the Date check."""
    structure: ReviewCheck | None = None
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
        text, html, parts = _body_parts(message)
    except RecursionError:  # e.g. 1,000 nested multiparts: read the headers alone
        message = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
        text, html, parts = None, None, []
        structure = ReviewCheck("mime_structure", "fail", "the MIME structure is nested too deeply to read")
    assert isinstance(message, EmailMessage)
    scan = _HtmlScan()
    if html is not None:
        scan.feed(html)
        scan.close()
    links = _link_reports(scan.anchors, text)
    from_check, senders = _check_from(message)
    from_domain = senders[0].rsplit("@", 1)[1] if senders else None
    dkim = verify_signatures(raw, from_domain, dns_txt)
    checks = [
        _check_text_part(text, html),
        _check_html(html, scan),
        _check_images(scan),
        _check_links(links),
        _check_unsubscribe(message, text, html, dkim),
        _check_message_id(message),
        _check_date(message, now or datetime.now(UTC)),
        from_check,
        _check_reply_to(message, senders),
        _check_size(len(raw), parts),
        _check_dkim(dkim),
        *([structure] if structure else []),
    ]
    checks.sort(key=lambda c: STATUS_ORDER.index(c.status))  # problems first; stable within a status
    headers = {
        name.lower(): str(message.get(name))[:500] if message.get(name) is not None else None
        for name in (
            "From",
            "Reply-To",
            "Subject",
            "Date",
            "Message-ID",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
        )
    }
    return Review(len(raw), checks, links, dkim, parts, headers)
