"""MX and TXT lookups for verify-email and domain verification, with dnspython.

dnspython is imported inside the lookups: it costs ~90 ms of import time that the daemon's
start-up never needs. Resolvers are injectable (`MxResolver`, `TxtResolver`) so tests never
touch the network; `nameserver`/`port` point a lookup at one server (tests run one on loopback).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dns.asyncresolver

__all__ = ["DnsError", "MxResolver", "TxtResolver", "resolve_mx", "resolve_txt"]

MxResolver = Callable[[str], Awaitable[list[str]]]
TxtResolver = Callable[[str], Awaitable[list[str]]]

DEFAULT_TIMEOUT = 3.0


class DnsError(Exception):
    """The lookup failed (no nameserver, server failure, invalid name, malformed answer)."""


def _resolver(nameserver: str | None, port: int, timeout: float) -> dns.asyncresolver.Resolver:
    import dns.asyncresolver
    import dns.resolver

    if nameserver is None:
        try:
            resolver = dns.asyncresolver.Resolver()  # the system's configuration (/etc/resolv.conf)
        except dns.resolver.NoResolverConfiguration:
            raise DnsError("no nameserver configured") from None
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [nameserver]
    resolver.port = port
    resolver.timeout = resolver.lifetime = timeout
    return resolver


async def _answer(domain: str, rdtype: str, *, timeout: float, nameserver: str | None, port: int) -> Any:
    """The answer's records, or None when the name or the record type does not exist."""
    import dns.exception
    import dns.resolver

    try:
        resolver = _resolver(nameserver, port, timeout)
        return await resolver.resolve(domain, rdtype, search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    except dns.exception.Timeout:
        raise TimeoutError(f"no DNS answer for {domain[:300]!r} within {timeout} s") from None
    except dns.exception.DNSException as error:  # bad name, SERVFAIL everywhere, malformed answer
        raise DnsError(f"{type(error).__name__}: {str(error)[:300]}") from None


async def resolve_mx(
    domain: str, *, timeout: float = DEFAULT_TIMEOUT, nameserver: str | None = None, port: int = 53
) -> list[str]:
    """MX hosts of a domain, lowest preference first; [] when none (or a null MX). TimeoutError after `timeout`."""
    answer = await _answer(domain, "MX", timeout=timeout, nameserver=nameserver, port=port)
    if answer is None:
        return []
    records = sorted((record.preference, record.exchange) for record in answer)
    # RFC 7505 null MX ("0 ."): the domain accepts no mail
    return [host.to_text(omit_final_dot=True) for _, host in records if len(host.labels) > 1]


async def resolve_txt(
    domain: str, *, timeout: float = DEFAULT_TIMEOUT, nameserver: str | None = None, port: int = 53
) -> list[str]:
    """TXT strings of a domain (each record's character-strings joined)."""
    answer = await _answer(domain, "TXT", timeout=timeout, nameserver=nameserver, port=port)
    if answer is None:
        return []
    return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]
