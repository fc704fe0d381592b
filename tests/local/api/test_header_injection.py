"""The injection corpus through every send route, delivered to a real aiosmtpd relay sink.

REST send, reply, reply-all, forward and draft send, then the MCP tools in local mode. What a
caller writes is refused with the argument named (and nothing reaches the relay); what comes
from a hostile inbound mail (its subject, its sender's display name) is neutralised, and the
bytes the relay receives carry exactly the intended headers, one Subject, and the body as written.
One backend and one sink serve the whole module.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx2
import pytest
import pytest_asyncio
from mcp.client import Client

from mam_mcp.client import MamClient
from mam_mcp.config import Settings
from mam_mcp.headers import is_safe_header_value
from mam_mcp.local.api.app import create_app
from mam_mcp.local.auth.keys import mint_tenant_key
from mam_mcp.local.config import LocalConfig
from mam_mcp.local.relay.smtp_relay import SmtpRelay
from mam_mcp.local.service.backend import LocalBackend
from mam_mcp.local.store.email_store import EmailStore
from mam_mcp.server import build_server
from tests.conftest import make_settings
from tests.injection_corpus import ATTACKER, INJECTIONS
from tests.local.conftest import fake_mx, fake_txt
from tests.local.relay_sink import RelaySink, serve_sink

pytestmark = pytest.mark.asyncio(loop_scope="module")

CASES = list(INJECTIONS.items())
IDS = [name for name, _ in CASES]
REPLY_BODY = "Thanks, we will look into it.\nSecond line stays."
BOSS = "boss@example.com"
JANE = "jane@example.com"


@dataclass
class Stack:
    backend: LocalBackend
    api: httpx2.AsyncClient
    key: str
    sink: RelaySink
    inbox: dict[str, Any]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    config = LocalConfig(data_dir=tmp_path_factory.mktemp("injection") / "local", http_port=0, smtp_port=0)
    async with serve_sink() as sink, EmailStore(config) as store:
        key = await mint_tenant_key(store)
        backend = LocalBackend(config, store, relay=SmtpRelay(sink.url), mx_resolver=fake_mx, txt_resolver=fake_txt)
        transport = httpx2.ASGITransport(app=create_app(backend))
        async with httpx2.AsyncClient(
            transport=transport, base_url="http://local.test", headers={"X-API-Key": key}
        ) as api:
            created = await api.post("/v1/inboxes", json={"username": "agent", "displayName": "Agent"})
            assert created.status_code == 201, created.text
            inbox = created.json()
            stack = Stack(backend, api, key, sink, inbox)
            await _inbound(stack, "Hello", sender=BOSS)  # the boss has written: a known correspondent
            yield stack


def _header_form(value: str) -> str:
    """How a hostile sender gets `value` into a Subject or display name: raw if it can be, else encoded."""
    if any(ch in value for ch in "\r\n\x00"):
        return f"=?utf-8?b?{base64.b64encode(value.encode()).decode()}?="
    return value


async def _inbound(stack: Stack, subject: str, *, sender: str = JANE, display: str = "Jane") -> str:
    number = len(stack.sink.received) + id(subject) % 100_000
    raw = (
        f"From: {display} <{sender}>\r\nTo: {stack.inbox['email']}\r\nCc: {BOSS}\r\n"
        f"Subject: {subject}\r\nMessage-ID: <hostile-{number}@example.com>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nOriginal text.\r\n"
    ).encode()
    [event] = await stack.backend.ingest(raw, sender, [stack.inbox["email"]])
    return str(event.message["message_id"])


def _delivered(stack: Stack, result: dict[str, Any]) -> tuple[EmailMessage, list[str]]:
    [envelope] = stack.sink.by_message_id(result["messageId"])
    parsed = message_from_bytes(envelope.original_content, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed, list(envelope.rcpt_tos)


def _assert_exact_headers(message: EmailMessage, expected: set[str]) -> None:
    names = [name.lower() for name in message.keys()]
    assert len(names) == len(set(names)), f"a header appears twice: {names}"
    assert set(names) - {"content-transfer-encoding"} == expected, names
    for name, value in message.items():
        assert is_safe_header_value(str(value)), (name, value)
    # The attacker's words may stay inside the one Subject line; they reach no other header.
    assert ATTACKER not in " ".join(str(v) for n, v in message.items() if n.lower() != "subject")


REPLY_HEADERS = {"from", "to", "subject", "date", "message-id", "in-reply-to", "references", "mime-version",
                 "content-type"}  # fmt: skip


# ---------------------------------------------------------------- what the caller writes: refused


@pytest.mark.parametrize(("name", "value"), CASES, ids=IDS)
async def test_rest_send_refuses_each_header_argument_by_name(stack: Stack, name: str, value: str) -> None:
    before = len(stack.sink.received)
    url = f"/v1/inboxes/{stack.inbox['id']}/send"
    base = {"to": [BOSS], "subject": "ok", "text": "body", "verified": True}
    for argument, body in (
        ("subject", {**base, "subject": value}),
        ("to", {**base, "to": [f"{value}@example.com"]}),
        ("cc", {**base, "cc": [f"{value}@example.com"]}),
        ("bcc", {**base, "bcc": [f"{value}@example.com"]}),
    ):
        refused = await stack.api.post(url, json=body)
        assert refused.status_code == 400, (argument, refused.text)
        assert refused.json()["code"] == "VALIDATION_ERROR"
        assert refused.json()["details"][0]["path"] == argument, refused.text
    renamed = await stack.api.patch(f"/v1/inboxes/{stack.inbox['id']}", json={"displayName": value})
    assert renamed.status_code == 400 and renamed.json()["details"][0]["path"] == "displayName"
    drafted = await stack.api.post(f"/v1/inboxes/{stack.inbox['id']}/drafts", json={"subject": value})
    assert drafted.status_code == 400 and drafted.json()["details"][0]["path"] == "subject"
    assert len(stack.sink.received) == before, "nothing reached the relay"


async def test_an_old_draft_with_a_hostile_subject_is_refused_and_kept(stack: Stack) -> None:
    inbox_id = stack.inbox["id"]
    draft = await stack.backend.store.mail.create_draft(  # written before the check existed
        inbox_id, {"to": [BOSS], "subject": INJECTIONS["q-crlf"], "plain_body": "b"}
    )
    refused = await stack.api.post(f"/v1/inboxes/{inbox_id}/drafts/{draft['id']}/send", json={"verified": True})
    assert refused.status_code == 400 and refused.json()["details"][0]["path"] == "subject"
    assert await stack.backend.store.mail.get_draft(inbox_id, draft["id"]) is not None


# ---------------------------------------------------------------- what hostile mail brings: neutralised


@pytest.mark.parametrize(("name", "value"), CASES, ids=IDS)
async def test_rest_reply_to_hostile_subject_sends_exactly_one_subject(stack: Stack, name: str, value: str) -> None:
    parent = await _inbound(stack, _header_form(value))
    sent = await stack.api.post(
        f"/v1/inboxes/{stack.inbox['id']}/reply/{parent}", json={"text": REPLY_BODY}
    )
    assert sent.status_code == 201, sent.text
    message, rcpts = _delivered(stack, sent.json())
    _assert_exact_headers(message, REPLY_HEADERS)
    assert rcpts == [JANE]
    assert str(message["Subject"]).startswith("Re: ")
    body = message.get_body(("plain",))
    assert body is not None and body.get_content().splitlines() == REPLY_BODY.splitlines()


@pytest.mark.parametrize(("name", "value"), CASES, ids=IDS)
async def test_rest_reply_all_to_hostile_subject_sends_exactly_one_subject(
    stack: Stack, name: str, value: str
) -> None:
    parent = await _inbound(stack, _header_form(value))
    sent = await stack.api.post(
        f"/v1/inboxes/{stack.inbox['id']}/reply-all/{parent}", json={"text": REPLY_BODY}
    )
    assert sent.status_code == 201, sent.text
    message, rcpts = _delivered(stack, sent.json())
    _assert_exact_headers(message, REPLY_HEADERS | {"cc"})
    assert sorted(rcpts) == [BOSS, JANE] and str(message["Cc"]) == BOSS


@pytest.mark.parametrize(("name", "value"), CASES, ids=IDS)
async def test_rest_forward_of_hostile_mail_sends_exactly_one_subject_and_one_line_quotes(
    stack: Stack, name: str, value: str
) -> None:
    parent = await _inbound(stack, _header_form(value), display=_header_form(value))
    sent = await stack.api.post(
        f"/v1/inboxes/{stack.inbox['id']}/forward/{parent}",
        json={"to": [BOSS], "text": "See below.", "verified": True},
    )
    assert sent.status_code == 201, sent.text
    message, rcpts = _delivered(stack, sent.json())
    _assert_exact_headers(message, {"from", "to", "subject", "date", "message-id", "mime-version", "content-type"})
    assert rcpts == [BOSS] and str(message["Subject"]).startswith("Fwd: ")
    body = message.get_body(("plain",))
    assert body is not None
    lines = body.get_content().splitlines()
    quote = lines.index("---------- Forwarded message ----------")
    assert lines[0] == "See below."
    assert [line.split(":")[0] for line in lines[quote + 1 : quote + 5]] == ["From", "Date", "Subject", "To"]
    assert lines[quote + 5 :] == ["", "Original text."]


@pytest.mark.parametrize(("name", "value"), CASES, ids=IDS)
async def test_rest_draft_reply_to_hostile_subject_sends_exactly_one_subject(
    stack: Stack, name: str, value: str
) -> None:
    inbox_id = stack.inbox["id"]
    parent = await _inbound(stack, _header_form(value))
    draft = await stack.api.post(
        f"/v1/inboxes/{inbox_id}/drafts", json={"replyToMessageId": parent, "text": REPLY_BODY}
    )
    assert draft.status_code == 201, draft.text
    sent = await stack.api.post(f"/v1/inboxes/{inbox_id}/drafts/{draft.json()['id']}/send")
    assert sent.status_code == 201, sent.text
    message, rcpts = _delivered(stack, sent.json())
    _assert_exact_headers(message, REPLY_HEADERS)
    assert rcpts == [JANE]


# ---------------------------------------------------------------- the MCP tools, local mode


def _settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, hosted=False, env={"MAM_MCP_MODE": "local"})


async def _tool(client: Client, name: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(name, args)
    assert not result.is_error, f"{name}: {result.content[0].text}"
    return dict(result.structured_content or {})


async def test_mcp_tools_refuse_hostile_arguments_and_neutralise_hostile_mail(stack: Stack, tmp_path: Path) -> None:
    # One MCP session for the whole corpus (a session per case costs ~0.2 s); failures name the case.
    inbox_id = stack.inbox["id"]

    async def factory(settings: Settings) -> MamClient:
        return MamClient(base_url="http://local.test", api_key=stack.key, transport=stack.api._transport)

    server = build_server(_settings(tmp_path), client_factory=factory)
    sent: list[tuple[str, str, dict[str, Any]]] = []
    async with Client(server) as client:
        for name, value in CASES:
            before = len(stack.sink.received)
            for tool, args in (
                ("send_email", {"to": [BOSS], "subject": value, "body": "b", "verified": True}),
                ("create_draft", {"to": [BOSS], "subject": value}),
            ):
                refused = await client.call_tool(tool, {"inbox_id": inbox_id, **args})
                assert refused.is_error and "subject" in refused.content[0].text, (name, refused.content[0].text)
            assert len(stack.sink.received) == before, name

            parent = await _inbound(stack, _header_form(value))
            on_parent = {"inbox_id": inbox_id, "message_id": parent}
            sent.append((name, "Re: ", await _tool(client, "reply_to_email", {**on_parent, "body": REPLY_BODY})))
            sent.append(
                (name, "Fwd: ", await _tool(client, "forward_email", {**on_parent, "to": [BOSS], "verified": True}))
            )
            draft = await _tool(client, "create_draft", {"inbox_id": inbox_id, "reply_to_message_id": parent, "body": "d"})
            sent.append((name, "Re: ", await _tool(client, "send_draft", {"inbox_id": inbox_id, "draft_id": draft["id"]})))
    await server.runtime.aclose()  # type: ignore[attr-defined]
    for name, prefix, result in sent:
        message, _ = _delivered(stack, {"messageId": result["message_id"]})
        names = [n.lower() for n in message.keys()]
        assert names.count("subject") == 1 and "bcc" not in names and "reply-to" not in names, name
        subject = str(message["Subject"])
        assert subject.startswith(prefix) and is_safe_header_value(subject), (name, subject)
