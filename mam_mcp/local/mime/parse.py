"""Parse inbound RFC 5322 messages (stdlib `email`); the thread key of a subject.

Parsing uses the `compat32` policy (2-3x faster here than `policy.default`, same text on
common mail) with explicit header decoding, and never raises: whatever can be read is
returned and the caller keeps the raw source.

A large message (a spooled one, or over LARGE_PARSE_BYTES) is fed to the parser in chunks rather
than decoded whole into one string first, and base64 parts are decoded straight from the parsed
text: the copies the stdlib makes on the way (a 4-byte-per-character StringIO of the whole
message, the payload re-encoded, split into lines and joined) were most of the daemon's memory
peak on a 24 MB mail (bench/README.md, "Large mail").
"""

from __future__ import annotations

import binascii
import email
import email.feedparser
import email.header
import email.parser
import email.utils
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from email import policy as email_policy
from email.message import Message
from typing import Any

from .source import CHUNK_BYTES, RawMessage, SpooledMessage, raw_chunks

__all__ = [
    "ParsedAttachment",
    "ParsedMessage",
    "decode_header_value",
    "header_fields",
    "message_from_bytes",
    "message_from_raw",
    "normalize_subject",
    "parse_message",
    "simple_addresses",
]

MAX_DEPTH = 20  # deeper multiparts are kept only in the raw source
MAX_PARTS = 500
MAX_HEADER_CHARS = 16_384  # per decoded header value
MAX_STORED_HEADERS = 200
LARGE_PARSE_BYTES = 1024 * 1024  # above this, parsed in chunks (see the module doc)
DIRECT_BASE64_CHARS = 64 * 1024  # base64 parts above this are decoded from the text without copies
HEADERS_ONLY_SCAN_BYTES = 4 * 1024 * 1024  # of a spooled message the parser failed on, what is read
MERGE_CHARS = 64 * 1024  # base64-looking lines handed to the parser together, up to this much
# A line of base64 alphabet only: never a header (no `:`, no leading blank), a continuation, the blank
# line ending the headers nor a boundary (no leading `--`), so the parser treats it as plain body text.
_OPAQUE_LINE = re.compile(r"[A-Za-z0-9+/=]+\r?\n\Z")
_MSGID_RE = re.compile(r"<[^<>\s]+>")
_SUBJECT_PREFIX_RE = re.compile(
    r"^\s*(?:(?:re|fw|fwd|aw|sv|vs|wg|antw|ref|tr|rv|odp|r)\s*(?:\[\d+\])?\s*[:：]\s*)+",
    re.IGNORECASE,
)
_LIST_TAG_RE = re.compile(r"^\s*\[[^\]]{1,40}\]\s*")
_NESTED_TYPES = ("multipart", "message")  # maintypes whose body the feed parser must parse
_CONTENT_TYPE_RE = re.compile(r"^[a-z0-9!#$&^_.+-]{1,64}/[a-z0-9!#$&^_.+-]{1,127}$")
# `addr@domain` or `Display Name <addr@domain>` with plain atoms only: what most mail carries.
# Anything else (quotes, comments, groups, routes, odd spacing) goes to email.utils.getaddresses.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR_SPEC = rf"{_ATOM}(?:\.{_ATOM})*@{_ATOM}(?:\.{_ATOM})*"
_SIMPLE_ADDRESS_RE = re.compile(rf"[ \t]*(?:((?:{_ATOM} )*{_ATOM}) ?<({_ADDR_SPEC})>|({_ADDR_SPEC}))[ \t]*")


@dataclass(slots=True)
class ParsedAttachment:
    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None


@dataclass(slots=True)
class ParsedMessage:
    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    from_name: str | None = None
    from_address: str | None = None
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    subject: str = ""
    date: str | None = None  # ISO-8601 UTC when the Date header parses
    plain_body: str | None = None
    html_body: str | None = None
    attachments: list[ParsedAttachment] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    defects: int = 0


# ---------------------------------------------------------------- decoding


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Declared charset, then UTF-8, then UTF-8 with replacement if nearly clean, else latin-1."""
    if charset:
        try:
            return data.decode(charset.strip().strip('"').lower() or "utf-8")
        except (LookupError, UnicodeDecodeError, ValueError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", errors="replace")
    if text.count("\ufffd") * 100 <= max(len(text), 1):
        return text
    return data.decode("latin-1")  # every byte maps; legacy 8-bit mail stays readable


def _as_text(value: object) -> str:
    """A compat32 header value (str with surrogate escapes, or Header) as plain text."""
    if isinstance(value, email.header.Header):  # compat32 wraps raw 8-bit headers as unknown-8bit
        try:
            return "".join(
                _decode_bytes(chunk, charset) if isinstance(chunk, bytes) else chunk
                for chunk, charset in email.header.decode_header(value)
            )
        except Exception:  # noqa: BLE001
            return str(value)
    text = str(value)
    if text.isascii():  # nearly every header: no surrogate escapes to look for
        return text
    if any("\udc80" <= ch <= "\udcff" for ch in text):  # raw 8-bit bytes in a header
        return _decode_bytes(text.encode("utf-8", "surrogateescape"), None)
    return text


def decode_header_value(value: object) -> str:
    """Decode RFC 2047 words (any charset, broken ones included) and unfold; never raises."""
    text = _as_text(value)[: MAX_HEADER_CHARS * 4]
    if "=?" not in text and "\n" not in text and "\r" not in text and "\x00" not in text:
        return text.strip()[:MAX_HEADER_CHARS]  # what the general path gives when there is nothing to decode
    try:
        chunks = email.header.decode_header(text)
    except Exception:  # noqa: BLE001 - malformed encoded words: keep the text as is
        chunks = [(text, None)]
    out: list[str] = []
    for chunk, charset in chunks:
        out.append(_decode_bytes(chunk, charset) if isinstance(chunk, bytes) else chunk)
    joined = "".join(out) if len(chunks) > 1 else (out[0] if out else "")
    joined = re.sub(r"\r?\n[ \t]*", " ", joined).replace("\r", " ").replace("\x00", "")
    return joined.strip()[:MAX_HEADER_CHARS]


def simple_addresses(values: Sequence[str]) -> list[tuple[str, str]] | None:
    """(display name, address) pairs as `email.utils.getaddresses` gives them, or None.

    Only for plain forms (`a@b.example`, `Name <a@b.example>`, comma-separated); None means
    "not plain, ask getaddresses". Its character-by-character parser was a quarter of the
    parse time of ordinary mail.
    """
    pairs: list[tuple[str, str]] = []
    for value in values:
        for item in value.split(","):
            match = _SIMPLE_ADDRESS_RE.fullmatch(item)
            if match is None:
                return None
            display, angled, bare = match.groups()
            pairs.append((display, angled) if angled else ("", bare))
    return pairs


def _addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    values = msg.get_all(name) or []
    try:
        raw = [_as_text(v) for v in values]
        pairs = simple_addresses(raw)
        if pairs is None:
            pairs = email.utils.getaddresses(raw)
    except Exception:  # noqa: BLE001
        return []
    out: list[tuple[str, str]] = []
    for display, addr in pairs[:1000]:
        addr = addr.strip()
        if not addr or "@" not in addr:
            continue
        out.append((decode_header_value(display) if display else "", addr))
    return out


def _message_ids(value: object) -> list[str]:
    return _MSGID_RE.findall(_as_text(value))[:200] if value is not None else []


def _date_iso(value: object) -> str | None:
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(_as_text(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (ValueError, OverflowError):
        return None


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:  # noqa: BLE001 - broken RFC 2231 parameters
        name = None
    if name is None and "name" in str(part.get("Content-Type", "")).lower():
        try:
            param = part.get_param("name")  # old mailers put it only on Content-Type
            if isinstance(param, tuple):
                name = email.utils.collapse_rfc2231_value(param, errors="replace")
            else:
                name = param
        except Exception:  # noqa: BLE001
            name = None
    if not name:
        return None
    decoded = decode_header_value(name)  # some mailers RFC 2047-encode the filename
    return decoded.replace("/", "_").replace("\\", "_")[:255] or None


def _payload_bytes(part: Message) -> bytes:
    direct = _direct_base64(part)
    if direct is not None:
        return direct
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        payload = None
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    return b""


def _direct_base64(part: Message) -> bytes | None:
    """A large base64 payload decoded from its text in one step, or None (then the stdlib decodes).

    What `get_payload(decode=True)` returns, without its copies (the text encoded to bytes, split
    into lines, joined, padded): binascii skips the line breaks as the stdlib's decoder does, and
    where that decode succeeds the stdlib's gives the same bytes. Text with 8-bit characters or bad
    padding raises here and takes the stdlib's path, defects and all.
    """
    payload = part._payload  # noqa: SLF001 - get_payload(decode=False) may re-decode 8-bit text
    if not isinstance(payload, str) or len(payload) < DIRECT_BASE64_CHARS:
        return None
    if str(part.get("content-transfer-encoding", "")).lower() != "base64":  # as compat32 compares it
        return None
    try:
        return binascii.a2b_base64(payload)
    except (binascii.Error, ValueError):
        return None


# ---------------------------------------------------------------- parsing


def parse_message(raw: RawMessage) -> ParsedMessage:
    """Parse raw RFC 5322 bytes (in memory or spooled) into what the store keeps. Never raises."""
    result = ParsedMessage()
    try:
        msg = message_from_raw(raw)
    except Exception:  # noqa: BLE001 - e.g. RecursionError on 1,000 nested parts
        return _headers_only(raw, result)
    try:
        _read_headers(msg, result)
    except Exception:  # noqa: BLE001
        result.defects += 1
    try:
        _walk(msg, result, depth=0, budget=[MAX_PARTS])
    except Exception:  # noqa: BLE001 - keep whatever was read before the failure
        result.defects += 1
    return result


def _headers_only(raw: RawMessage, result: ParsedMessage) -> ParsedMessage:
    """What a reader still finds in mail whose body the parser cannot walk: its headers, and the
    rest as text (the raw source is kept as it came)."""
    if isinstance(raw, SpooledMessage):
        raw = raw.head(HEADERS_ONLY_SCAN_BYTES)  # the body shown is cut at 1 MB anyway
    result.defects = 1
    end = raw.find(b"\r\n\r\n")
    head, body = (raw[: end + 4], raw[end + 4 :]) if end >= 0 else (b"", raw)
    try:
        _read_headers(email.message_from_bytes(head, policy=email_policy.compat32), result)
    except Exception:  # noqa: BLE001
        body = raw
    result.plain_body = _decode_bytes(body[:1_000_000], None)
    return result


class _OpaqueRunsSubFile(email.feedparser.BufferedSubFile):
    """The parser's line source, handing a run of base64 lines over as one string.

    The feed parser collects a part's body line by line and joins the lines at its end: for a
    24 MB attachment, 300,000 small strings (about 40 MB) next to the joined 24 MB. Such lines
    mean nothing to it one by one (see _OPAQUE_LINE), and the joined text is the same.
    """

    def readline(self) -> Any:
        line = super().readline()
        if not isinstance(line, str) or not _OPAQUE_LINE.match(line):  # NeedMoreData, '' (EOF) or meaningful
            return line
        queued = self._lines  # what push() split and readline() would return next, in order
        run, size = [line], len(line)
        while queued and size < MERGE_CHARS and isinstance(queued[0], str) and _OPAQUE_LINE.match(queued[0]):
            following = queued.popleft()
            run.append(following)
            size += len(following)
        return "".join(run) if len(run) > 1 else line


class _LargeMessageParser(email.parser.BytesFeedParser):
    def __init__(self) -> None:
        super().__init__(policy=email_policy.compat32)
        self._input = _OpaqueRunsSubFile()  # before the first feed: the parse generator reads it from there


def message_from_raw(raw: RawMessage, *, chunk_bytes: int = CHUNK_BYTES) -> Message:
    """`message_from_bytes`, or for a large message the same parse fed in chunks.

    The stdlib's own parse decodes the whole message into one string and reads it through a
    StringIO (4 bytes a character); fed in chunks, the parser sees the same text the same way,
    with runs of base64 lines given to it whole (_OpaqueRunsSubFile).
    """
    if isinstance(raw, bytes) and len(raw) <= LARGE_PARSE_BYTES:
        return message_from_bytes(raw)
    parser = _LargeMessageParser()
    for chunk in raw_chunks(raw, chunk_bytes):
        parser.feed(bytes(chunk))
    return parser.close()


def header_fields(raw: bytes) -> list[tuple[str, str]]:
    """The decoded header fields of a raw source, in order, as `parse_message` reads them; only the
    header block is parsed, with compat32 (~40 us for a 1 KB message where `email.policy.default`
    took ~1.4 ms, on a loaded machine). Never raises."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    head = raw[: end + 4] if end >= 0 else raw
    try:
        msg = email.message_from_bytes(head, policy=email_policy.compat32)
        fields = msg.items()[:MAX_STORED_HEADERS]
        return [(str(name)[:200], decode_header_value(value)) for name, value in fields]
    except Exception:  # noqa: BLE001 - the raw source is still there to read
        return []


def message_from_bytes(raw: bytes) -> Message:
    """`email.message_from_bytes` with compat32, without feeding a single-part body line by line.

    The header block (up to the first blank CRLF line) is parsed alone. If that parse ended its
    headers exactly there (no defect, nothing left over as body: the full parse reads the same
    lines the same way) and the type is not multipart or message/*, the rest of the bytes is the
    payload, as the full parse sets it. Anything else gets the full parse.
    """
    end = raw.find(b"\r\n\r\n")
    if end > 0:
        msg = email.message_from_bytes(raw[: end + 4], policy=email_policy.compat32)
        if not msg.defects and msg.get_payload() == "" and msg.get_content_maintype() not in _NESTED_TYPES:
            msg.set_payload(raw[end + 4 :].decode("ascii", "surrogateescape"))
            return msg
    return email.message_from_bytes(raw, policy=email_policy.compat32)


def _read_headers(msg: Message, result: ParsedMessage) -> None:
    result.subject = decode_header_value(msg.get("Subject", ""))
    ids = _message_ids(msg.get("Message-ID"))
    result.message_id = ids[0] if ids else None
    irt = _message_ids(msg.get("In-Reply-To"))
    result.in_reply_to = irt[0] if irt else None
    result.references = _message_ids(msg.get("References"))
    sender = _addresses(msg, "From")
    if sender:
        result.from_name, result.from_address = sender[0][0] or None, sender[0][1]
    result.to = [addr for _, addr in _addresses(msg, "To")]
    result.cc = [addr for _, addr in _addresses(msg, "Cc")]
    result.date = _date_iso(msg.get("Date"))
    result.defects += len(getattr(msg, "defects", []) or [])
    for name, value in msg.items()[:MAX_STORED_HEADERS]:
        result.headers.append((str(name)[:200], decode_header_value(value)))


def _walk(part: Message, result: ParsedMessage, *, depth: int, budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        result.defects += 1
        return
    ctype = _clean_content_type(part.get_content_type())
    if part.is_multipart():
        children = part.get_payload()
        if not isinstance(children, list):
            return
        if ctype == "message/rfc822":
            _add_attachment(part, result, ctype, data=_embedded_bytes(children), filename=_filename(part))
            return
        for child in children:
            if isinstance(child, Message):
                _walk(child, result, depth=depth + 1, budget=budget)
        return
    disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
    filename = _filename(part)
    is_body_text = ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename
    if is_body_text:
        text = _decode_bytes(_payload_bytes(part), part.get_content_charset())
        if ctype == "text/plain" and result.plain_body is None:
            result.plain_body = text
            return
        if ctype == "text/html" and result.html_body is None:
            result.html_body = text
            return
    _add_attachment(part, result, ctype, data=_payload_bytes(part), filename=filename)


def _clean_content_type(value: str | None) -> str:
    """compat32 keeps a folded header's CR/LF inside the type; it is served and re-sent as a header later."""
    words = (value or "text/plain").lower().split()
    ctype = words[0] if words else "text/plain"
    return ctype if _CONTENT_TYPE_RE.match(ctype) else "application/octet-stream"


def _embedded_bytes(children: list[Any]) -> bytes:
    try:
        inner = children[0]
        return inner.as_bytes() if isinstance(inner, Message) else b""
    except Exception:  # noqa: BLE001
        return b""


def _add_attachment(
    part: Message, result: ParsedMessage, ctype: str, *, data: bytes, filename: str | None = None
) -> None:
    ext = {"message/rfc822": ".eml", "text/plain": ".txt", "text/html": ".html"}.get(ctype, ".bin")
    cid = part.get("Content-ID")
    result.attachments.append(
        ParsedAttachment(
            filename=filename or f"attachment-{len(result.attachments) + 1}{ext}",
            content_type=ctype,
            data=data,
            content_id=_as_text(cid).strip()[:250] if cid else None,
        )
    )


# ---------------------------------------------------------------- subjects and threading


def normalize_subject(subject: str | None) -> str:
    """Subject without Re:/Fwd:/AW:/SV: prefixes and list tags, lower-cased: the thread key."""
    text = (subject or "").strip()
    for _ in range(10):  # bounded: prefixes and tags may interleave ("Re: [list] Re: x")
        stripped = _LIST_TAG_RE.sub("", _SUBJECT_PREFIX_RE.sub("", text))
        if stripped == text:
            break
        text = stripped
    return " ".join(text.split()).lower()
