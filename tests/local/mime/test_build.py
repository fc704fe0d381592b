"""mime/build.py: outbound mail is well formed, carries what was set and refuses header injection."""

from __future__ import annotations

import email
from email import policy

import pytest

from mam_mcp.headers import UnsafeHeaderValue
from mam_mcp.local.mime.build import OutboundAttachment, build_outbound, new_message_id
from mam_mcp.local.mime.parse import parse_message


def test_ten_megabyte_attachment_round_trips() -> None:
    blob = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    raw = build_outbound(
        from_address="a@mam.localhost", from_name=None, to=["b@example.com"], subject="big",
        plain_body="see attached", html_body=None, message_id=new_message_id("mam.localhost"),
        attachments=[OutboundAttachment("big.bin", "application/octet-stream", blob)],
    )  # fmt: skip
    parsed = parse_message(raw)
    assert parsed.attachments[0].data == blob and parsed.plain_body is not None


def test_build_reply_headers_and_alternative_bodies() -> None:
    raw = build_outbound(
        from_address="scout@mam.localhost", from_name="Scout Ünïcode", to=["jane@example.com"],
        cc=["cc@example.com"], subject="Re: hello", plain_body="plain", html_body="<b>rich</b>",
        message_id="<new@mam.localhost>", in_reply_to="<p@example.com>",
        references=["<a@example.com>", "<p@example.com>"],
    )  # fmt: skip
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["Message-ID"] == "<new@mam.localhost>"
    assert msg["In-Reply-To"] == "<p@example.com>"
    assert msg["References"] == "<a@example.com> <p@example.com>"
    assert str(msg["From"]) == "Scout Ünïcode <scout@mam.localhost>"
    assert msg.get_content_type() == "multipart/alternative"
    assert "Bcc" not in msg


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"subject": "hi\r\nBcc: victim@example.com"}, "subject"),
        ({"from_name": "Evil\nBcc: x@example.com"}, "displayName"),
        ({"to": ["a@example.com\r\nBcc: x@example.com"]}, "to"),
    ],
)
def test_header_injection_is_refused(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {
        "from_address": "a@mam.localhost", "from_name": None, "to": ["b@example.com"], "subject": "s",
        "plain_body": "x", "html_body": None, "message_id": "<i@mam.localhost>",
    }  # fmt: skip
    args.update(kwargs)
    with pytest.raises(UnsafeHeaderValue) as info:
        build_outbound(**args)  # type: ignore[arg-type]
    assert info.value.argument == field
