"""The outbound policy the server enforces on every send route, in both modes, from file, env and flags.

A violation sends nothing and answers `POLICY_DENIED: <what>. Hint: <who can change it and how>`.
The policy is checked on the exact message a send would put on the wire, so recipients a reply or
reply-all derives from the mail being answered are checked too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client

from mam_mcp.client import MamClient
from mam_mcp.config import Settings
from mam_mcp.send_policy import OutboundPolicy
from mam_mcp.server import build_server
from tests.conftest import FAKE_KEY, make_settings
from tests.fakes.hosted_api import FakeHostedAPI
from tests.local.conftest import LocalBackendFixture, RecordingRelay, local_backend, local_config  # noqa: F401

MAIL = (
    b"From: Jane <jane@example.com>\r\nTo: scout@mam.localhost\r\nCc: rival@competitor.example\r\n"
    b"Subject: Quote\r\nMessage-ID: <q@example.com>\r\n\r\nHi\r\n"
)


@pytest.fixture
async def scene(local_backend: LocalBackendFixture) -> dict[str, Any]:  # noqa: F811
    backend, app, key = local_backend
    relay = RecordingRelay()
    backend.relay = relay
    async with MamClient(base_url="http://l.test", api_key=key, transport=httpx2.ASGITransport(app=app)) as client:
        inbox = await client.inboxes.create(username="scout")
    await backend.ingest(MAIL, "jane@example.com", ["scout@mam.localhost"])
    [parent] = await backend.store.mail.list_messages(inbox.id, direction="inbound", limit=1, offset=0)
    return {"inbox": inbox.id, "parent": parent["id"], "relay": relay, "fixture": local_backend}


@asynccontextmanager
async def tools(tmp_path: Path, fixture: LocalBackendFixture, **env: str) -> AsyncIterator[Client]:
    _, app, key = fixture

    async def factory(settings: Settings) -> MamClient:
        return MamClient(base_url="http://l.test", api_key=key, transport=httpx2.ASGITransport(app=app))

    server = build_server(make_settings(tmp_path, hosted=False, env={"MAM_MCP_MODE": "local", **env}), client_factory=factory)
    async with Client(server) as client:
        yield client
    await server.runtime.aclose()  # type: ignore[attr-defined]


def _denied(result: Any, what: str, setting: str, quoted: list[str] | None = None) -> None:
    text = result.content[0].text
    assert result.is_error and text.startswith(f"POLICY_DENIED: not sent: {what}"), text
    assert setting in text and "no tool can" in text
    if quoted:
        # Recipients may come from the mail being answered: named only inside the untrusted fence.
        head, fenced = text.split("<<<UNTRUSTED", 1)
        assert all(a not in head and a in fenced for a in quoted), text
        assert result.structured_content["error"]["quoted"] == quoted


CASES = [
    # (env, tool, args (inbox/parent filled in), what the refusal says, the setting it names, recipients fenced)
    ({"MAM_OUTBOUND_BLOCK": "competitor.example"}, "send_email",
     {"to": ["ceo@sub.competitor.example"], "subject": "x", "body": "x", "verified": True},
     "1 recipient is on the blocked list (listed below)", "MAM_OUTBOUND_BLOCK", ["ceo@sub.competitor.example"]),
    ({"MAM_OUTBOUND_BLOCK": "competitor.example"}, "reply_to_email", {"body": "x", "reply_all": True, "verified": True},
     "1 recipient is on the blocked list", "outbound.block", ["rival@competitor.example"]),
    ({"MAM_OUTBOUND_ALLOW": "example.com"}, "forward_email", {"to": ["someone@else.example"], "verified": True},
     "1 recipient is not on the allowed list (example.com)", "--allow-recipients", ["someone@else.example"]),
    ({"MAM_OUTBOUND_MAX_RECIPIENTS": "2"}, "send_email",
     {"to": ["a@example.com", "b@example.com"], "bcc": ["c@example.com"], "subject": "x", "body": "x", "verified": True},
     "3 recipients, more than the 2 this server allows per message", "MAM_OUTBOUND_MAX_RECIPIENTS", []),
    ({"MAM_OUTBOUND_REPLY_ONLY": "true"}, "send_email",
     {"to": ["jane@example.com"], "subject": "x", "body": "x"},
     "this server only lets the agent reply within existing threads (reply_only)", "outbound.reply_only", []),
    ({"MAM_OUTBOUND_REPLY_ONLY": "true"}, "forward_email", {"to": ["jane@example.com"]},
     "this server only lets the agent reply within existing threads", "--reply-only", []),
]


@pytest.mark.parametrize(
    ("env", "tool", "args", "what", "setting", "quoted"), CASES, ids=[f"{c[1]}-{next(iter(c[0]))}" for c in CASES]
)
async def test_a_policy_violation_sends_nothing_on_any_route(
    tmp_path: Path, scene: dict[str, Any], env: dict[str, str], tool: str, args: dict[str, Any], what: str,
    setting: str, quoted: list[str],
) -> None:  # fmt: skip
    call = {"inbox_id": scene["inbox"], **args}
    if tool != "send_email":
        call["message_id"] = scene["parent"]
    async with tools(tmp_path, scene["fixture"], **env) as client:
        result = await client.call_tool(tool, call)
    _denied(result, what, setting, quoted)
    assert scene["relay"].sent == []
    outbound = await scene["fixture"][0].store.mail.list_messages(scene["inbox"], direction="outbound", limit=5, offset=0)
    assert outbound == []


async def test_reply_only_still_allows_replies_and_reply_drafts(tmp_path: Path, scene: dict[str, Any]) -> None:
    store = scene["fixture"][0].store
    blank = {"cc": [], "bcc": [], "subject": "x", "plain_body": "x", "html_body": None}
    new_draft = await store.mail.create_draft(scene["inbox"], {**blank, "to": ["jane@example.com"], "reply_to_message_id": None})
    reply_draft = await store.mail.create_draft(scene["inbox"], {**blank, "to": [], "reply_to_message_id": scene["parent"]})
    async with tools(tmp_path, scene["fixture"], MAM_OUTBOUND_REPLY_ONLY="1") as client:
        reply = await client.call_tool("reply_to_email", {"inbox_id": scene["inbox"], "message_id": scene["parent"], "body": "ok"})
        refused = await client.call_tool("send_draft", {"inbox_id": scene["inbox"], "draft_id": new_draft["id"]})
        allowed = await client.call_tool("send_draft", {"inbox_id": scene["inbox"], "draft_id": reply_draft["id"]})
    assert not reply.is_error and not allowed.is_error, allowed.content[0].text
    _denied(refused, "this server only lets the agent reply", "reply_only")
    assert len(scene["relay"].sent) == 2


async def test_sends_per_hour_counts_what_the_inbox_really_sent(tmp_path: Path, scene: dict[str, Any]) -> None:
    args = {"inbox_id": scene["inbox"], "to": ["jane@example.com"], "subject": "x", "body": "x"}
    async with tools(tmp_path, scene["fixture"], MAM_OUTBOUND_SENDS_PER_HOUR="2") as client:
        first = await client.call_tool("send_email", args)
        second = await client.call_tool("reply_to_email", {"inbox_id": scene["inbox"], "message_id": scene["parent"], "body": "y"})
    async with tools(tmp_path, scene["fixture"], MAM_OUTBOUND_SENDS_PER_HOUR="2") as other_host:
        third = await other_host.call_tool("send_email", args)  # another host process: same count
    assert not first.is_error and not second.is_error
    _denied(third, "this inbox already sent 2 messages in the last hour; the limit is 2", "sends_per_hour")
    assert len(scene["relay"].sent) == 2


async def test_hosted_mode_enforces_the_same_policy_before_the_api_call(tmp_path: Path) -> None:
    fake = FakeHostedAPI(api_key=FAKE_KEY)
    inbox = fake.seed_inbox("scout")
    fake.deliver_inbound(inbox["id"], from_address="jane@example.com", subject="Quote", plain_body="hi")
    parent = next(iter(fake.state.messages))
    fake.state.messages[parent].cc = ["rival@competitor.example"]

    async def factory(settings: Settings) -> MamClient:
        return MamClient(base_url="http://fake", api_key=FAKE_KEY, transport=fake.transport())

    settings = make_settings(tmp_path, env={"MAM_OUTBOUND_BLOCK": "competitor.example"})
    server = build_server(settings, client_factory=factory)
    async with Client(server) as client:
        blocked = await client.call_tool(
            "reply_to_email", {"inbox_id": inbox["id"], "message_id": parent, "body": "x", "reply_all": True, "verified": True}
        )
        reply = await client.call_tool("reply_to_email", {"inbox_id": inbox["id"], "message_id": parent, "body": "x"})
    _denied(blocked, "1 recipient is on the blocked list", "block", ["rival@competitor.example"])
    assert not reply.is_error, reply.content[0].text
    sent = [m for m in fake.state.messages.values() if m.direction == "outbound"]
    assert [m.to for m in sent] == [["jane@example.com"]]


def test_the_config_file_sets_consent_and_policy_and_flags_win(tmp_path: Path) -> None:
    file = tmp_path / "policy.toml"
    file.write_text(
        'confirm_sends = "all"\nconfirm_timeout_seconds = 60\n'
        '[outbound]\nallow = ["example.com", "Boss@Corp.example"]\nmax_recipients = 5\nsends_per_hour = 30\n',
        encoding="utf-8",
    )
    settings = make_settings(tmp_path, hosted=False, env={"MAM_MCP_CONFIG": str(file)}, max_recipients=3)
    assert settings.confirm_sends == "all" and settings.confirm_timeout == 60
    assert settings.outbound == OutboundPolicy(
        allow=("example.com", "boss@corp.example"), max_recipients=3, sends_per_hour=30
    )
    assert settings.setting_sources == {
        "confirm_sends": str(file), "confirm_timeout": str(file), "allow": str(file),
        "max_recipients": "--max-recipients", "sends_per_hour": str(file),
    }  # fmt: skip
    assert settings.config_file == file


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[outbound]\nallowed = ["example.com"]\n', "unknown setting(s) outbound.allowed"),
        ('confirm_send = "off"\n', "unknown setting(s) confirm_send"),
        ('confirm_sends = "sometimes"\n', "confirm_sends must be one of off, new-recipients, all"),
        ("[outbound]\nmax_recipients = 0\n", "outbound policy max_recipients"),
        ('[outbound]\nblock = ["not a domain"]\n', "not an address or domain"),
        ("confirm_sends = \n", "policy.toml"),
    ],
)
def test_a_broken_config_file_is_refused_with_its_name_never_silently_weaker(
    tmp_path: Path, content: str, message: str
) -> None:
    file = tmp_path / "policy.toml"
    file.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as raised:
        make_settings(tmp_path, hosted=False, env={"MAM_MCP_CONFIG": str(file)})
    assert str(file) in str(raised.value) or "outbound policy" in str(raised.value) or "confirm_sends" in str(raised.value)


def test_the_default_config_file_is_read_when_present(tmp_path: Path) -> None:
    folder = tmp_path / "config" / "myagentmail"
    folder.mkdir(parents=True)
    (folder / "mam-mcp.toml").write_text('[outbound]\nreply_only = true\n', encoding="utf-8")
    settings = make_settings(tmp_path, hosted=False)
    assert settings.outbound.reply_only and settings.config_file == folder / "mam-mcp.toml"
    assert make_settings(tmp_path, hosted=False, env={"MAM_OUTBOUND_REPLY_ONLY": "0"}).outbound.reply_only is False
