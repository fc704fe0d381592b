"""DKIM signatures of a raw message, verified with dkimpy when their key can be looked up.

dkimpy (and the dnspython it uses) is imported inside `verify_signatures`: ~120 ms of import
time that `mam-mcp serve` must not pay. Key lookups go through `TxtLookup` (dkimpy's `dnsfunc`
contract: a name like b"sel._domainkey.example.com." and a timeout in, the TXT record out);
tests inject one, so they never touch the network.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["DkimResult", "TxtLookup", "organizational_domain", "verify_signatures"]

TxtLookup = Callable[..., bytes | str | None]

LOOKUP_TIMEOUT = 4  # seconds per key lookup (dkimpy's `timeout`)
MAX_SIGNATURES = 5
_TAG = re.compile(rb"(?:^|;)\s*([a-z]+)\s*=\s*([^;]*)", re.IGNORECASE)
# second-level labels under which companies register (co.uk, com.au, ...): without a public
# suffix list, the organizational domain is approximated as the last two labels, or three here
_SECOND_LEVEL = frozenset({"co", "com", "org", "net", "ac", "gov", "edu", "ne", "or", "gob", "gv"})


def organizational_domain(host: str) -> str:
    """Approximate organizational domain (mail.acme.co.uk -> acme.co.uk), for alignment checks."""
    labels = host.lower().strip(".").split(".")
    keep = 3 if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL else 2
    return ".".join(labels[-keep:])


@dataclass(frozen=True)
class DkimResult:
    domain: str  # d=
    selector: str  # s=
    algorithm: str  # a=
    signed_headers: tuple[str, ...]  # h=, lower case
    result: str  # verified | failed | not_verified
    reason: str  # our words; may name the domain, selector or key record (mail-derived)
    aligned: bool  # d= has the From domain's organizational domain (DMARC relaxed alignment)

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "selector": self.selector,
            "algorithm": self.algorithm,
            "result": self.result,
            "reason": self.reason,
            "aligned_with_from": self.aligned,
            "signed_headers": list(self.signed_headers),
        }


class _Collected(logging.Handler):
    """dkimpy reports why a verification failed through its logger: keep the messages."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _tags(header_value: bytes) -> dict[str, str]:
    unfolded = re.sub(rb"\s+", b" ", header_value)
    return {k.decode().lower(): v.decode("ascii", "replace").strip() for k, v in _TAG.findall(unfolded)}


def _signature_headers(raw: bytes) -> list[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]
    unfolded = re.sub(rb"\r?\n[ \t]", b" ", head)
    return [
        line.split(b":", 1)[1]
        for line in unfolded.splitlines()
        if line.lower().startswith(b"dkim-signature:")
    ]


def _outcome(ok: bool, error: str | None, log: list[str], lookups: list[object]) -> tuple[str, str]:
    """(result, reason) from what dkimpy returned, raised and logged, and what the lookup saw."""
    if ok:
        return "verified", "signature verified with the published key"
    if error is not None:
        if "body hash mismatch" in error:
            return "failed", "body hash mismatch: the body changed after signing"
        if "pynacl" in error.lower():
            return "not_verified", "ed25519 key: verifying it needs PyNaCl (pip install pynacl)"
        return "failed", f"invalid signature: {error[:160]}"
    said = " ".join(log)
    if any(isinstance(seen, Exception) for seen in lookups) or "DnsTimeoutError" in said:
        return "not_verified", "key lookup failed (no DNS answer)"
    if "missing public key" in said or not any(lookups):
        return "not_verified", "no key published for this selector"
    if "public key too small" in said:
        return "failed", "the published key is too small (under 1024 bits)"
    if "KeyFormatError" in said or "could not parse" in said or "unknown" in said:
        return "failed", f"the published key record is unusable: {said[:160]}"
    return "failed", "signature does not match the published key"


def _verify_one(raw: bytes, index: int, lookup: TxtLookup) -> tuple[str, str]:
    """(result, reason) of the signature at `index`."""
    import dkim

    lookups: list[object] = []

    def dnsfunc(name: bytes, timeout: int = LOOKUP_TIMEOUT) -> bytes | str | None:
        try:
            record = lookup(name, timeout=timeout)
        except Exception as error:  # whatever the resolver raised, the key could not be looked up
            lookups.append(error)
            return None
        lookups.append(record)
        return record

    handler = _Collected()
    # a logger of our own, not registered: dkimpy's messages reach only this handler
    logger = logging.Logger("mam_mcp.dkim_check", logging.ERROR)
    logger.addHandler(handler)
    try:
        ok = bool(dkim.DKIM(raw, logger=logger, timeout=LOOKUP_TIMEOUT).verify(idx=index, dnsfunc=dnsfunc))
    except dkim.DKIMException as raised:
        return _outcome(False, str(raised), handler.messages, lookups)
    return _outcome(ok, None, handler.messages, lookups)


def verify_signatures(
    raw: bytes, from_domain: str | None, lookup: TxtLookup | None = None
) -> list[DkimResult]:
    """Every DKIM-Signature of `raw` (up to five), each verified or said why not.

    `lookup` defaults to dkimpy's own DNS lookup (dnspython); a lookup that raises or returns
    nothing leaves the signature `not_verified`, never `failed`.
    """
    signatures = _signature_headers(raw)[:MAX_SIGNATURES]
    if not signatures:
        return []
    import dkim.dnsplug  # lazy: dkimpy and dnspython cost ~120 ms of import time

    txt_lookup: TxtLookup = lookup or dkim.dnsplug.get_txt
    org = organizational_domain(from_domain) if from_domain else None
    results = []
    for index, header_value in enumerate(signatures):
        tags = _tags(header_value)
        result, reason = _verify_one(raw, index, txt_lookup)
        domain = tags.get("d", "").lower()
        results.append(
            DkimResult(
                domain=domain,
                selector=tags.get("s", ""),
                algorithm=tags.get("a", ""),
                signed_headers=tuple(h.strip().lower() for h in tags.get("h", "").split(":") if h.strip()),
                result=result,
                reason=reason,
                aligned=bool(org and domain and organizational_domain(domain) == org),
            )
        )
    return results
