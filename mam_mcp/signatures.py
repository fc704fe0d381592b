"""HMAC-SHA256 signatures of webhook bodies: the one signing function, for senders and receivers.

Both header schemes carry the same digest, the hex HMAC-SHA256 of the raw body under the secret:
- `x-mam-signature: <hex>`: webhooks of the local backend, and `mam-mcp listen`;
- `X-MyAgentMail-Signature: v1=<hex>`: MyAgentMail's LinkedIn signal webhooks.

A receiver checks the raw bytes, before parsing the JSON:

    from mam_mcp.signatures import SIGNAL_SIGNATURE_HEADER, verify_signal_signature

    if not verify_signal_signature(secret, await request.body(), request.headers.get(SIGNAL_SIGNATURE_HEADER)):
        return Response(status_code=401)

Standard library only: the local backend, the CLI and users' receivers all import it.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = [
    "SIGNAL_SIGNATURE_HEADER",
    "SIGNATURE_HEADER",
    "sign_body",
    "sign_signal_body",
    "verify_signal_signature",
    "verify_signature",
]

SIGNATURE_HEADER = "x-mam-signature"
SIGNAL_SIGNATURE_HEADER = "X-MyAgentMail-Signature"
_SIGNAL_SCHEME = "v1="


def sign_body(secret: str | bytes, body: bytes) -> str:
    """The hex HMAC-SHA256 of `body` under `secret`: the `x-mam-signature` value."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def sign_signal_body(secret: str | bytes, body: bytes) -> str:
    """The `X-MyAgentMail-Signature` value for `body`: `v1=<hex HMAC-SHA256>`."""
    return _SIGNAL_SCHEME + sign_body(secret, body)


def verify_signature(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """True when `header` is the `x-mam-signature` of the raw `body` (constant-time compare)."""
    return bool(secret) and _same(sign_body(secret, body), header)


def verify_signal_signature(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """True when `header` is the `v1=<hex>` signature of the raw `body` (constant-time compare)."""
    return bool(secret) and _same(sign_signal_body(secret, body), header)


def _same(expected: str, header: str | None) -> bool:
    if not header:
        return False
    # compare_digest on bytes: constant time, and a non-ASCII header cannot raise.
    return hmac.compare_digest(expected.encode("ascii"), header.strip().lower().encode("utf-8", "replace"))
