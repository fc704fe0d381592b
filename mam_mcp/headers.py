"""Outgoing mail header values, safe by construction. Standard library only: both the local
backend and the API client import it, so both modes refuse the same input the same way.

A header value must stay one header, whoever reads it. Checking the raw text is not enough:
Python's `email` package decodes RFC 2047 encoded words when a header is set, and so does the
recipient's mail client, so `=?utf-8?q?hi=0D=0ABcc:_x@evil.example?=` becomes a second header
(`Bcc:`) on some CPython versions and a two-line subject on the others. So every value is
checked as written *and* as any decoder could read it: each encoded word, and each run of
adjacent encoded words joined, under its declared charset, UTF-8 and plain ASCII.

Refused: NUL and every character `str.splitlines()` breaks on (CR, LF, VT, FF, FS, GS, RS,
NEL U+0085, U+2028, U+2029).

- `check_header_value(argument, value)`: for what a caller wrote. Raises `UnsafeHeaderValue`
  naming the argument to change.
- `neutralise(value)`: for text taken from inbound mail (reply and forward subjects, quoted
  names): line breaks become spaces, so the result is always one line.
- `clean_message_ids(ids)`: In-Reply-To/References ids from inbound mail; anything that is
  not a plain `<id>` is dropped.
- `check_header_block(raw, expected)`: the last check on built bytes: exactly the expected
  headers, none of them splittable by a decoder.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

__all__ = [
    "LINE_BREAKS",
    "UNSAFE_REASON",
    "UnsafeHeaderValue",
    "check_header_block",
    "check_header_value",
    "check_header_values",
    "clean_message_ids",
    "is_safe_header_value",
    "neutralise",
]

LINE_BREAKS: Final = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines() splits on
_FORBIDDEN_RUN: Final = re.compile("[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00]+")
# Lenient on purpose (a superset of RFC 2047): whatever some decoder might take for an encoded word.
_ENCODED_WORD: Final = re.compile(r"=\?([^?\s]{1,75})\?([bBqQ])\?([^?]*)\?=")
_BETWEEN_WORDS: Final = re.compile(r"[ \t]*")
_MESSAGE_ID: Final = re.compile(r"<[!-~]{1,250}>")  # printable ASCII, no space: nothing to decode or fold
_NEUTRALISE_ROUNDS: Final = 4
_MAX_NESTING: Final = 3  # encoded words inside decoded encoded words, looked into this deep
MAX_NEUTRALISED_CHARS: Final = 998  # RFC 5322's line limit, as a cap on one derived value
UNSAFE_REASON: Final = (
    "must be a single line: no CR, LF, NUL or other line break (VT, FF, FS/GS/RS, U+0085, U+2028, "
    "U+2029), written out or inside an encoded word (=?charset?q?...?=)"
)


class UnsafeHeaderValue(ValueError):
    """A value bound for a mail header would not stay one header; `argument` names what to change."""

    def __init__(self, argument: str, reason: str = UNSAFE_REASON) -> None:
        super().__init__(f"{argument}: {reason}")
        self.argument = argument
        self.reason = reason


def _word_bytes(encoding: str, text: str) -> bytes:
    """The bytes of an encoded word's text, decoded leniently (as forgiving decoders do)."""
    if encoding in "qQ":
        data = text.replace("_", " ").encode("latin-1", "replace")
        return re.sub(rb"=([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), data)
    cleaned = re.sub(r"[^A-Za-z0-9+/]", "", text)
    cleaned = cleaned[: len(cleaned) - (len(cleaned) % 4 == 1)]  # a lone trailing sextet carries no byte
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):
        return b""


def _readings(charset: str, data: bytes) -> Iterator[str]:
    """`data` as the declared charset, UTF-8 and ASCII would show it (ASCII keeps control bytes only)."""
    declared = charset.split("*", 1)[0].strip().lower()
    for name in dict.fromkeys((declared, "utf-8", "ascii")):
        try:
            yield data.decode(name, "replace")
        except (LookupError, ValueError):
            continue


def _decoded_forms(value: str) -> Iterator[str]:
    """Every text a decoder could make of the encoded words in `value`: each alone, and each run joined."""
    run: list[tuple[str, bytes]] = []
    end = -1
    for match in _ENCODED_WORD.finditer(value):
        charset, encoding, text = match.groups()
        data = _word_bytes(encoding, text)
        yield from _readings(charset, data)
        adjacent = end >= 0 and _BETWEEN_WORDS.fullmatch(value, end, match.start()) is not None
        if not adjacent:
            yield from _joined(run)
            run = []
        run.append((charset, data))
        end = match.end()
    yield from _joined(run)


def _joined(run: Sequence[tuple[str, bytes]]) -> Iterator[str]:
    if len(run) > 1:  # some decoders join adjacent words' bytes before decoding (a character split in two)
        yield from _readings(run[0][0], b"".join(data for _, data in run))


def is_safe_header_value(value: str | None) -> bool:
    """True when `value`, as written and as any decoder reads it, has no line break and no NUL."""
    return _is_safe(value, _MAX_NESTING)


def _is_safe(value: str | None, depth: int) -> bool:
    if not value:
        return True
    if _FORBIDDEN_RUN.search(value):
        return False
    if "=?" not in value:
        return True
    for form in _decoded_forms(value):
        if form == value:
            continue
        # A decoded word may hold another word (decoded again by the next reader): bounded.
        if _FORBIDDEN_RUN.search(form) or ("=?" in form and (depth == 0 or not _is_safe(form, depth - 1))):
            return False
    return True


def check_header_value(argument: str, value: str | None) -> str | None:
    """`value` unchanged if it is safe in a header; else `UnsafeHeaderValue(argument)`."""
    if not is_safe_header_value(value):
        raise UnsafeHeaderValue(argument)
    return value


def check_header_values(argument: str, values: Iterable[str] | None) -> None:
    for value in values or ():
        check_header_value(argument, value)


def _decode_if_unsafe(match: re.Match[str]) -> str:
    charset, encoding, text = match.groups()
    if is_safe_header_value(match.group(0)):
        return match.group(0)
    data = _word_bytes(encoding, text)
    return next(_readings(charset, data), "")


def neutralise(value: str | None, *, max_chars: int = MAX_NEUTRALISED_CHARS) -> str:
    """Text from inbound mail made safe for one header: line breaks (even encoded ones) become spaces."""
    text = value or ""
    for _ in range(_NEUTRALISE_ROUNDS):  # an encoded word may decode to another one: bounded
        text = _FORBIDDEN_RUN.sub(" ", _ENCODED_WORD.sub(_decode_if_unsafe, text))
        if is_safe_header_value(text):
            break
    else:
        text = _FORBIDDEN_RUN.sub(" ", text).replace("=?", "= ?")  # stop any decoder from seeing words
    text = text.strip()[:max_chars].strip()
    return text if is_safe_header_value(text) else text.replace("=?", "= ?")


def clean_message_ids(ids: Iterable[str | None]) -> list[str]:
    """Message ids safe for In-Reply-To/References: plain `<...>` in printable ASCII; the rest dropped."""
    return [i for i in ids if i and _MESSAGE_ID.fullmatch(i) and "=?" not in i]


def check_header_block(raw: bytes, expected: Iterable[str]) -> None:
    """Refuse built message bytes unless their header block holds exactly `expected` (by name, any order).

    The last line of defence: whatever a CPython version's folder does, the bytes that leave carry
    the headers that were set, each unfolding to a value no decoder can split.
    """
    head, separator, _ = raw.partition(b"\r\n\r\n")
    if not separator:
        raise UnsafeHeaderValue("message", "the built message has no header/body separator")
    found: list[tuple[str, list[bytes]]] = []
    for line in head.split(b"\r\n"):
        if any(byte in line for byte in (b"\r", b"\n", b"\x00")):
            raise UnsafeHeaderValue("message", "a header line holds a bare CR, LF or NUL")
        if line[:1] in (b" ", b"\t") and found:
            found[-1][1].append(line)
            continue
        name, colon, rest = line.partition(b":")
        if not colon or not name or any(byte <= 32 or byte >= 127 for byte in name):
            raise UnsafeHeaderValue("message", "a header line is not `Name: value`")
        found.append((name.decode("ascii"), [rest]))
    if Counter(n.lower() for n, _ in found) != Counter(n.lower() for n in expected):
        names = ", ".join(n for n, _ in found)
        raise UnsafeHeaderValue("message", f"the built headers ({names[:300]}) are not the ones set")
    for name, lines in found:
        value = b"".join(lines).decode("utf-8", "replace")
        if not is_safe_header_value(value):
            raise UnsafeHeaderValue(name.lower(), UNSAFE_REASON)
