"""MX and TXT lookups for verify-email and domain verification.

A tiny stdlib DNS-over-UDP client (one question, the system's first nameserver) instead of
a new dependency: we need two record types, a timeout and nothing else. Resolvers are
injectable (`MxResolver`, `TxtResolver`) so tests never touch the network.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

__all__ = ["DnsError", "MxResolver", "TxtResolver", "resolve_mx", "resolve_txt", "system_nameserver"]

MxResolver = Callable[[str], Awaitable[list[str]]]
TxtResolver = Callable[[str], Awaitable[list[str]]]

DEFAULT_TIMEOUT = 3.0
_TYPE_MX = 15
_TYPE_TXT = 16
_RCODE_NXDOMAIN = 3


class DnsError(Exception):
    """The lookup failed (no nameserver, server failure, malformed answer)."""


def system_nameserver(resolv_conf: Path = Path("/etc/resolv.conf")) -> str:
    try:
        for line in resolv_conf.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                return parts[1]
    except OSError:
        pass
    raise DnsError("no nameserver configured")


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        try:
            encoded = label.encode("idna") if label else b""
        except UnicodeError:  # e.g. a non-ASCII label whose punycode form is over 63 octets
            raise DnsError(f"invalid domain name: {name[:300]!r}") from None
        if not encoded or len(encoded) > 63:
            raise DnsError(f"invalid domain name: {name!r}")
        out += bytes([len(encoded)]) + encoded
    return out + b"\x00"


def _read_name(packet: bytes, offset: int) -> tuple[str, int]:
    """A possibly compressed name at `offset`; returns it and the offset after it."""
    labels: list[str] = []
    end: int | None = None
    for _ in range(128):  # bounded: compression pointers may loop in a hostile packet
        length = packet[offset]
        if length & 0xC0 == 0xC0:
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | packet[offset + 1]
            continue
        if length == 0:
            return ".".join(labels), end if end is not None else offset + 1
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
    raise DnsError("malformed name")


def _parse_answers(packet: bytes, query_id: int, qtype: int) -> list[tuple[int, bytes, int]]:
    """(type, packet, rdata offset) of each answer record."""
    if len(packet) < 12:
        raise DnsError("short answer")
    rid, flags, qdcount, ancount, _, _ = struct.unpack("!HHHHHH", packet[:12])
    if rid != query_id:
        raise DnsError("mismatched answer")
    rcode = flags & 0x000F
    if rcode == _RCODE_NXDOMAIN:
        return []
    if rcode != 0:
        raise DnsError(f"server failure (rcode {rcode})")
    offset = 12
    for _ in range(qdcount):
        _, offset = _read_name(packet, offset)
        offset += 4
    answers: list[tuple[int, bytes, int]] = []
    for _ in range(ancount):
        _, offset = _read_name(packet, offset)
        rtype, _, _, rdlength = struct.unpack("!HHIH", packet[offset : offset + 10])
        offset += 10
        if rtype == qtype:
            answers.append((rtype, packet, offset))
        offset += rdlength
    return answers


class _Exchange(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(DnsError(str(exc)))


async def _query(
    name: str, qtype: int, *, timeout: float, nameserver: str | None, port: int
) -> list[tuple[int, bytes, int]]:
    server = nameserver or system_nameserver()
    query_id = secrets.randbelow(65536)
    packet = (
        struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0)
        + _encode_name(name)
        + struct.pack("!HH", qtype, 1)
    )
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Exchange, remote_addr=(server, port))
    try:
        transport.sendto(packet)
        async with asyncio.timeout(timeout):
            data = await protocol.answer
    finally:
        transport.close()
    try:
        return _parse_answers(data, query_id, qtype)
    except (IndexError, struct.error) as exc:
        raise DnsError("malformed answer") from exc


async def resolve_mx(
    domain: str, *, timeout: float = DEFAULT_TIMEOUT, nameserver: str | None = None, port: int = 53
) -> list[str]:
    """MX hosts of a domain, lowest preference first; [] when none. TimeoutError after `timeout`."""
    records: list[tuple[int, str]] = []
    for _, packet, offset in await _query(
        domain, _TYPE_MX, timeout=timeout, nameserver=nameserver, port=port
    ):
        preference = struct.unpack("!H", packet[offset : offset + 2])[0]
        host, _ = _read_name(packet, offset + 2)
        records.append((preference, host))
    return [host for _, host in sorted(records)]


async def resolve_txt(
    domain: str, *, timeout: float = DEFAULT_TIMEOUT, nameserver: str | None = None, port: int = 53
) -> list[str]:
    """TXT strings of a domain (each record's character-strings joined)."""
    texts: list[str] = []
    for _, packet, offset in await _query(
        domain, _TYPE_TXT, timeout=timeout, nameserver=nameserver, port=port
    ):
        rdlength = struct.unpack("!H", packet[offset - 2 : offset])[0]
        end, parts = offset + rdlength, []
        while offset < end:
            length = packet[offset]
            parts.append(packet[offset + 1 : offset + 1 + length].decode("utf-8", "replace"))
            offset += 1 + length
        texts.append("".join(parts))
    return texts
