"""Verify the signature of a LinkedIn signal webhook, for users' receivers.

MyAgentMail signs each signal delivery with the signal's webhook secret (returned once on
create; mam-mcp saves it to a 0600 file): header `X-MyAgentMail-Signature: v1=<hex>`, where
<hex> is HMAC-SHA256(secret, raw request body). Check it against the raw bytes, before
parsing the JSON:

    from mam_mcp.linkedin_signature import SIGNATURE_HEADER, verify_signal_signature

    if not verify_signal_signature(secret, await request.body(), request.headers.get(SIGNATURE_HEADER)):
        return Response(status_code=401)
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SIGNATURE_HEADER", "sign_signal_body", "verify_signal_signature"]

SIGNATURE_HEADER = "X-MyAgentMail-Signature"
_SCHEME = "v1="


def sign_signal_body(secret: str | bytes, body: bytes) -> str:
    """The header value MyAgentMail sends for `body`: `v1=<hex HMAC-SHA256>`."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return _SCHEME + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signal_signature(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """True when `header` is the valid `v1=<hex>` signature of the raw `body`; constant-time compare."""
    if not header or not secret:
        return False
    expected = sign_signal_body(secret, body)
    # compare_digest on bytes: constant time, and a non-ASCII header cannot raise.
    return hmac.compare_digest(expected.encode("ascii"), header.strip().lower().encode("utf-8", "replace"))
