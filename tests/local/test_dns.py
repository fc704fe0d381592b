"""dns.py against a real UDP DNS responder on 127.0.0.1 (MX, TXT, NXDOMAIN, compression, timeout)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from mam_mcp.local.dns import DnsError, resolve_mx, resolve_txt, system_nameserver


def _answer(query: bytes) -> bytes | None:
    qid = struct.unpack("!H", query[:2])[0]
    end = 12
    while query[end]:
        end += 1 + query[end]
    question = query[12 : end + 5]
    labels, offset = [], 12
    while query[offset]:
        labels.append(query[offset + 1 : offset + 1 + query[offset]].decode())
        offset += 1 + query[offset]
    name, qtype = ".".join(labels), struct.unpack("!H", query[end + 1 : end + 3])[0]
    if name == "silent.example":
        return None
    if name == "missing.example":
        return struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question
    pointer = b"\xc0\x0c"  # compression: the answer's owner name points at the question
    records: list[bytes] = []
    if qtype == 15:
        for pref, host in ((20, b"\x03mx2\xc0\x0c"), (10, b"\x03mx1\xc0\x0c")):
            rdata = struct.pack("!H", pref) + host
            records.append(pointer + struct.pack("!HHIH", 15, 1, 300, len(rdata)) + rdata)
    elif qtype == 16:
        rdata = b"\x0bmam-verify=" + b"\x03abc"
        records.append(pointer + struct.pack("!HHIH", 16, 1, 300, len(rdata)) + rdata)
    header = struct.pack("!HHHHHH", qid, 0x8180, 1, len(records), 0, 0)
    return header + question + b"".join(records)


class _Responder(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = _answer(data)
        if reply is not None:
            self.transport.sendto(reply, addr)  # type: ignore[attr-defined]


@pytest_asyncio.fixture
async def dns_port() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Responder, local_addr=("127.0.0.1", 0))
    yield transport.get_extra_info("sockname")[1]
    transport.close()


async def test_mx_sorted_by_preference_with_compressed_names(dns_port: int) -> None:
    hosts = await resolve_mx("example.com", nameserver="127.0.0.1", port=dns_port)
    assert hosts == ["mx1.example.com", "mx2.example.com"]


async def test_txt_strings_are_joined(dns_port: int) -> None:
    assert await resolve_txt("_mam-verify.example.com", nameserver="127.0.0.1", port=dns_port) == [
        "mam-verify=abc"
    ]


async def test_nxdomain_is_empty_and_silence_times_out(dns_port: int) -> None:
    assert await resolve_mx("missing.example", nameserver="127.0.0.1", port=dns_port) == []
    with pytest.raises(TimeoutError):
        await resolve_mx("silent.example", nameserver="127.0.0.1", port=dns_port, timeout=0.2)


async def test_invalid_names_and_missing_nameserver(tmp_path: Path) -> None:
    with pytest.raises(DnsError):
        await resolve_mx("bad..name", nameserver="127.0.0.1", port=9)
    with pytest.raises(DnsError):  # 63 characters, but over 63 octets once punycoded
        await resolve_txt("_mam-verify." + "é" * 63 + ".example", nameserver="127.0.0.1", port=9)
    empty = tmp_path / "resolv.conf"
    empty.write_text("# nothing\n")
    with pytest.raises(DnsError):
        system_nameserver(empty)
    (tmp_path / "ok.conf").write_text("search x\nnameserver 10.0.0.2\n")
    assert system_nameserver(tmp_path / "ok.conf") == "10.0.0.2"
