"""mam_mcp.signatures: one HMAC-SHA256 for both header schemes, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac

from mam_mcp.signatures import sign_body, sign_signal_body, verify_signal_signature, verify_signature

SECRET = "whsec_0123456789abcdef"
BODY = b'{"event":"message.received","messageId":"m1"}'


def test_both_schemes_carry_the_same_hex_hmac_sha256_of_the_raw_body() -> None:
    expected = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()  # computed independently
    assert sign_body(SECRET, BODY) == sign_body(SECRET.encode(), BODY) == expected
    assert sign_signal_body(SECRET, BODY) == "v1=" + expected
    assert verify_signature(SECRET, BODY, expected)
    assert verify_signal_signature(SECRET, BODY, "v1=" + expected)


def test_each_scheme_refuses_the_others_header_and_anything_without_a_secret() -> None:
    hex_only, with_scheme = sign_body(SECRET, BODY), sign_signal_body(SECRET, BODY)
    assert not verify_signature(SECRET, BODY, with_scheme)
    assert not verify_signal_signature(SECRET, BODY, hex_only)
    assert not verify_signature("", BODY, sign_body("", BODY))  # an empty secret proves nothing
    assert not verify_signal_signature(SECRET, BODY, None) and not verify_signature(SECRET, BODY, None)

