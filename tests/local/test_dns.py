"""dns.py (dnspython) against a real UDP DNS responder on 127.0.0.1: MX, TXT, NXDOMAIN, no answer,
null MX, server failure, silence, bad names. Nothing leaves the machine."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
import pytest_asyncio

from mam_mcp.local.dns import DnsError, resolve_mx, resolve_txt

# name -> (rcode, {record type: [rdata text]}); a name that is not here gets no answer at all
ZONE: dict[str, tuple[int, dict[str, list[str]]]] = {
    "example.com.": (dns.rcode.NOERROR, {"MX": ["20 mx2.example.com.", "10 mx1.example.com."]}),
    "_mam-verify.example.com.": (dns.rcode.NOERROR, {"TXT": ['"mam-verify=" "abc"', '"v=spf1 -all"']}),
    "missing.example.": (dns.rcode.NXDOMAIN, {}),
    "nomail.example.": (dns.rcode.NOERROR, {"MX": ["0 ."]}),
    "www.example.com.": (dns.rcode.NOERROR, {"A": ["192.0.2.1"]}),
    "broken.example.": (dns.rcode.SERVFAIL, {}),
}


class _Responder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.questions: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name, rdtype = question.name.to_text(), dns.rdatatype.to_text(question.rdtype)
        self.questions.append(f"{name} {rdtype}")
        if name not in ZONE:
            return  # silence: the client must time out
        rcode, records = ZONE[name]
        reply = dns.message.make_response(query)
        reply.set_rcode(rcode)
        if rdtype in records:
            reply.answer.append(dns.rrset.from_text_list(question.name, 300, "IN", rdtype, records[rdtype]))
        self.transport.sendto(reply.to_wire(), addr)  # type: ignore[attr-defined]


@pytest_asyncio.fixture
async def responder() -> AsyncIterator[tuple[_Responder, int]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Responder, local_addr=("127.0.0.1", 0))
    yield protocol, transport.get_extra_info("sockname")[1]
    transport.close()


async def test_mx_hosts_sorted_by_preference(responder: tuple[_Responder, int]) -> None:
    server, port = responder
    assert await resolve_mx("example.com", nameserver="127.0.0.1", port=port) == [
        "mx1.example.com",
        "mx2.example.com",
    ]
    assert server.questions == ["example.com. MX"]


async def test_txt_character_strings_are_joined_per_record(responder: tuple[_Responder, int]) -> None:
    _, port = responder
    texts = await resolve_txt("_mam-verify.example.com", nameserver="127.0.0.1", port=port)
    assert sorted(texts) == ["mam-verify=abc", "v=spf1 -all"]


async def test_no_such_name_no_such_record_and_null_mx_are_empty(responder: tuple[_Responder, int]) -> None:
    _, port = responder
    assert await resolve_mx("missing.example", nameserver="127.0.0.1", port=port) == []
    assert await resolve_mx("www.example.com", nameserver="127.0.0.1", port=port) == []
    assert await resolve_mx("nomail.example", nameserver="127.0.0.1", port=port) == []


async def test_server_failure_is_a_dns_error_and_silence_a_timeout(responder: tuple[_Responder, int]) -> None:
    _, port = responder
    with pytest.raises(DnsError):
        await resolve_txt("broken.example", nameserver="127.0.0.1", port=port, timeout=1.0)
    with pytest.raises(TimeoutError):
        await resolve_mx("silent.example", nameserver="127.0.0.1", port=port, timeout=0.2)


async def test_invalid_names_fail_before_any_packet(responder: tuple[_Responder, int]) -> None:
    server, port = responder
    with pytest.raises(DnsError):
        await resolve_mx("bad..name", nameserver="127.0.0.1", port=port)
    with pytest.raises(DnsError):  # 63 characters, but over 63 octets once punycoded
        await resolve_txt("_mam-verify." + "é" * 63 + ".example", nameserver="127.0.0.1", port=port)
    assert server.questions == []


def test_the_daemon_start_up_does_not_import_dnspython() -> None:
    probe = "import sys, mam_mcp.local.service.backend; print([m for m in sys.modules if m == 'dns' or m.startswith('dns.')])"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
