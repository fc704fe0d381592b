"""mam_mcp.headers and the message builder: no value, written or encoded, makes a second header.

These run on every CPython the package supports (the email package differs between them: 3.13
re-encodes where 3.11 and 3.12 write the decoded line break out).
"""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest

from mam_mcp.headers import (
    UnsafeHeaderValue,
    check_header_block,
    check_header_value,
    clean_message_ids,
    is_safe_header_value,
    neutralise,
)
from mam_mcp.local.mime.build import build_outbound, forward_quote, forward_subject, reply_subject
from tests.injection_corpus import ATTACKER, INJECTIONS, SAFE

BUILD_ARGS: dict[str, object] = {
    "from_address": "agent@mam.localhost", "from_name": "Agent", "to": ["jane@example.com"],
    "subject": "Hello", "plain_body": "Body line\r\n", "html_body": None, "message_id": "<id1@mam.localhost>",
}  # fmt: skip


def _headers(raw: bytes) -> list[tuple[str, str]]:
    parsed = message_from_bytes(raw, policy=policy.default)
    return [(name.lower(), str(value)) for name, value in parsed.items()]


@pytest.mark.parametrize("value", INJECTIONS.values(), ids=INJECTIONS.keys())
def test_every_injection_is_refused_with_the_argument_named(value: str) -> None:
    assert not is_safe_header_value(value)
    with pytest.raises(UnsafeHeaderValue) as refused:
        check_header_value("subject", value)
    assert refused.value.argument == "subject"
    assert str(refused.value).startswith("subject: must be a single line")


@pytest.mark.parametrize("value", SAFE.values(), ids=SAFE.keys())
def test_look_alikes_pass_untouched(value: str) -> None:
    assert check_header_value("subject", value) == value
    assert neutralise(value) == value.strip()


@pytest.mark.parametrize("value", INJECTIONS.values(), ids=INJECTIONS.keys())
def test_neutralised_inbound_text_is_one_safe_line(value: str) -> None:
    cleaned = neutralise(value)
    assert is_safe_header_value(cleaned)
    assert "Hi" in cleaned or "Invoice" in cleaned


@pytest.mark.parametrize("value", INJECTIONS.values(), ids=INJECTIONS.keys())
@pytest.mark.parametrize("field", ["subject", "from_name", "to", "cc"])
def test_the_builder_refuses_each_field_and_names_it(value: str, field: str) -> None:
    args = dict(BUILD_ARGS)
    args[field] = [f"{value}@example.com"] if field in ("to", "cc") else value
    with pytest.raises(UnsafeHeaderValue) as refused:
        build_outbound(**args)  # type: ignore[arg-type]
    assert refused.value.argument == {"from_name": "displayName"}.get(field, field)


@pytest.mark.parametrize("value", INJECTIONS.values(), ids=INJECTIONS.keys())
def test_reply_and_forward_subjects_of_hostile_mail_make_exactly_one_subject(value: str) -> None:
    for subject in (reply_subject(value), forward_subject(value)):
        raw = build_outbound(**{**BUILD_ARGS, "subject": subject})  # type: ignore[arg-type]
        headers = _headers(raw)
        names = [name for name, _ in headers]
        assert names.count("subject") == 1 and "bcc" not in names and "reply-to" not in names
        assert set(names) == {"from", "to", "subject", "date", "message-id", "mime-version", "content-type",
                              "content-transfer-encoding"}  # fmt: skip
        shown = dict(headers)["subject"]
        assert shown.startswith(("Re: ", "Fwd: ")) and is_safe_header_value(shown)
        assert message_from_bytes(raw, policy=policy.default).get_content().strip() == "Body line"


def test_forward_quote_keeps_each_quoted_header_on_one_line() -> None:
    hostile = INJECTIONS["u2028"]
    quote = forward_quote(
        from_header=f"{INJECTIONS['q-crlf']} <a@example.com>", date="2026-01-01", subject=hostile,
        to=[f"b@example.com{INJECTIONS['lf']}"], body="original",
    )  # fmt: skip
    lines = quote.splitlines()
    assert [line.split(":")[0] for line in lines[1:5]] == ["From", "Date", "Subject", "To"]
    assert lines[5:] == ["", "original"]


def test_thread_ids_from_mail_are_kept_only_when_plain() -> None:
    ids = ["<ok@example.com>", "<a\r\nBcc: x@y>", "<=?utf-8?q?=0D=0A?=@x>", "<sp ace@x>", "no-brackets", None]
    assert clean_message_ids(ids) == ["<ok@example.com>"]
    raw = build_outbound(**{**BUILD_ARGS, "in_reply_to": ids[1], "references": ids})  # type: ignore[arg-type]
    headers = dict(_headers(raw))
    assert "in-reply-to" not in headers and headers["references"] == "<ok@example.com>"


def test_long_values_fold_into_one_header_that_unfolds_unchanged() -> None:
    for subject in ("x" * 990, "é" * 990, "Re: " + "word " * 190):
        raw = build_outbound(**{**BUILD_ARGS, "subject": subject.strip()})  # type: ignore[arg-type]
        head = raw.split(b"\r\n\r\n")[0]
        assert max(len(line) for line in head.split(b"\r\n")) <= 998
        headers = _headers(raw)
        assert [n for n, _ in headers].count("subject") == 1
        assert dict(headers)["subject"] == subject.strip()


def test_neutralised_text_is_capped() -> None:
    assert len(reply_subject("a" * 20_000)) <= 1_002


def test_the_last_check_refuses_bytes_with_an_unexpected_header() -> None:
    good = b"From: a@b.example\r\nSubject: hi\r\n there\r\n\r\nbody"
    check_header_block(good, ["From", "Subject"])
    with pytest.raises(UnsafeHeaderValue):
        check_header_block(good.replace(b"\r\n there", b"\r\nBcc: " + ATTACKER.encode()), ["From", "Subject"])
    with pytest.raises(UnsafeHeaderValue) as encoded:
        check_header_block(b"Subject: =?utf-8?q?a=0D=0Ab?=\r\n\r\nbody", ["Subject"])
    assert encoded.value.argument == "subject"
    with pytest.raises(UnsafeHeaderValue):
        check_header_block(b"Subject: a\nBcc: x\r\n\r\nbody", ["Subject"])
