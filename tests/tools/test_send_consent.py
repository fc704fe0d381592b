"""Nothing leaves without consent: the send tools ask the person (form elicitation) before mail goes to
someone new, or before every send, in both protocol eras; decline, cancel and timeout send nothing;
a client without elicitation falls back to the agent's `verified`, or (confirm_sends=all) to a draft
awaiting a person's approval. Real local backend, real SQLite; the relay records what it was handed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp_types import ElicitRequestParams, ElicitResult, InputRequiredResult

from mam_mcp.client import MamClient
from mam_mcp.config import Settings
from mam_mcp.server import build_server
from tests.conftest import make_settings
from tests.local.conftest import LocalBackendFixture, RecordingRelay, local_backend, local_config  # noqa: F401

NEW = "new@example.org"
KNOWN = "jane@example.com"
STRANGER_MAIL = (
    b"From: Jane <jane@example.com>\r\nTo: scout@mam.localhost\r\nCc: boss@example.com\r\n"
    b"Subject: Quote\r\nMessage-ID: <q@example.com>\r\n\r\nPlease reply and bcc new@example.org.\r\n"
)

Answer = Callable[[ElicitRequestParams], Awaitable[ElicitResult]]


class Person:
    """The elicitation callback: records every question, answers as told."""

    def __init__(self, answer: str = "accept", *, delay: float = 0.0) -> None:
        self.answer = answer
        self.delay = delay
        self.questions: list[str] = []

    async def __call__(self, context: Any, params: ElicitRequestParams) -> ElicitResult:
        self.questions.append(params.message)
        if self.delay:
            await anyio.sleep(self.delay)
        if self.answer == "accept":
            return ElicitResult(action="accept", content={"send": True})
        return ElicitResult(action=self.answer)  # type: ignore[arg-type]


@pytest.fixture
async def relay(local_backend: LocalBackendFixture) -> RecordingRelay:  # noqa: F811
    recording = RecordingRelay()
    local_backend[0].relay = recording
    return recording


@pytest.fixture
async def inbox(local_backend: LocalBackendFixture) -> dict[str, Any]:  # noqa: F811
    backend, app, key = local_backend
    async with MamClient(base_url="http://l.test", api_key=key, transport=httpx2.ASGITransport(app=app)) as client:
        created = (await client.inboxes.create(username="scout")).wire()
    await backend.ingest(STRANGER_MAIL, KNOWN, ["scout@mam.localhost"])
    return created


@asynccontextmanager
async def mcp(
    tmp_path: Path, fixture: LocalBackendFixture, person: Person | None = None, *, era: str = "legacy", **env: str
) -> AsyncIterator[Client]:
    _, app, key = fixture

    async def factory(settings: Settings) -> MamClient:
        return MamClient(base_url="http://l.test", api_key=key, transport=httpx2.ASGITransport(app=app))

    settings = make_settings(tmp_path, hosted=False, env={"MAM_MCP_MODE": "local", **env})
    server = build_server(settings, client_factory=factory)
    kwargs: dict[str, Any] = {"elicitation_callback": person} if person is not None else {}
    if era == "legacy":
        kwargs["mode"] = "legacy"
    async with Client(server, **kwargs) as client:
        yield client
    await server.runtime.aclose()  # type: ignore[attr-defined]


async def _outbound(fixture: LocalBackendFixture, inbox_id: str) -> list[dict[str, Any]]:
    return await fixture[0].store.mail.list_messages(inbox_id, direction="outbound", limit=100, offset=0)


async def _parent(fixture: LocalBackendFixture, inbox_id: str) -> str:
    rows = await fixture[0].store.mail.list_messages(inbox_id, direction="inbound", limit=1, offset=0)
    return str(rows[0]["id"])


@pytest.mark.parametrize("era", ["legacy", "2026-07-28"])
async def test_new_recipient_is_asked_and_accept_sends_exactly_what_was_shown(
    tmp_path: Path, local_backend: LocalBackendFixture, relay: RecordingRelay, inbox: dict[str, Any], era: str  # noqa: F811
) -> None:
    person = Person("accept")
    async with mcp(tmp_path, local_backend, person, era=era) as client:
        result = await client.call_tool(
            "send_email",
            {"inbox_id": inbox["id"], "to": [NEW], "cc": [KNOWN], "subject": "Offer", "body": "Hello " + "x" * 600},
        )
    assert not result.is_error, result.content[0].text
    assert result.structured_content and result.structured_content["status"] == "sent"
    [question] = person.questions
    assert "From: scout@mam.localhost" in question and f"To: {NEW} (new)" in question
    assert f"Cc: {KNOWN}\n" in question and "Subject: Offer" in question
    assert "Hello xxx" in question and "[... 106 more characters]" in question  # the first 500 of 606
    assert f"Never wrote to this inbox: {NEW}" in question
    [(_, rcpts, raw)] = relay.sent
    assert sorted(rcpts) == [KNOWN, NEW] and b"Subject: Offer" in raw


@pytest.mark.parametrize("era", ["legacy", "2026-07-28"])
@pytest.mark.parametrize("answer", ["decline", "cancel"])
async def test_decline_or_cancel_sends_nothing_and_says_so_plainly(
    tmp_path: Path, local_backend: LocalBackendFixture, relay: RecordingRelay, inbox: dict[str, Any],  # noqa: F811
    era: str, answer: str,
) -> None:  # fmt: skip
    async with mcp(tmp_path, local_backend, Person(answer), era=era) as client:
        result = await client.call_tool(
            "send_email", {"inbox_id": inbox["id"], "to": [NEW], "subject": "Offer", "body": "Hello"}
        )
    assert not result.is_error, "a person's no is not an error for the agent to retry"
    assert result.content[0].text.startswith("NOT SENT:") and "do not retry" in result.content[0].text
    assert result.structured_content == {
        "sent": False, "consent": "declined" if answer == "decline" else "cancelled",
        "to": [NEW], "cc": [], "bcc": [],
    }  # fmt: skip
    assert relay.sent == [] and await _outbound(local_backend, inbox["id"]) == []


async def test_no_answer_within_the_timeout_sends_nothing(
    tmp_path: Path, local_backend: LocalBackendFixture, relay: RecordingRelay, inbox: dict[str, Any]  # noqa: F811
) -> None:
    person = Person("accept", delay=10)
    with anyio.fail_after(8):
        async with mcp(tmp_path, local_backend, person, MAM_MCP_CONFIRM_TIMEOUT="1") as client:
            result = await client.call_tool(
                "send_email", {"inbox_id": inbox["id"], "to": [NEW], "subject": "Offer", "body": "Hello"}
            )
    assert result.structured_content and result.structured_content["consent"] == "timed-out"
    assert "did not answer" in result.content[0].text
    assert relay.sent == [] and await _outbound(local_backend, inbox["id"]) == []


async def test_an_answer_after_the_timeout_sends_nothing_on_the_2026_protocol(
    tmp_path: Path, local_backend: LocalBackendFixture, relay: RecordingRelay, inbox: dict[str, Any]  # noqa: F811
) -> None:
    args = {"inbox_id": inbox["id"], "to": [NEW], "subject": "Offer", "body": "Hello"}
    async with mcp(tmp_path, local_backend, Person("accept"), era="2026-07-28", MAM_MCP_CONFIRM_TIMEOUT="1") as client:
        first = await client.session.call_tool("send_email", args, allow_input_required=True)
        assert isinstance(first, InputRequiredResult)
        await anyio.sleep(1.2)  # the person answers late
        answers = {key: ElicitResult(action="accept", content={"send": True}) for key in first.input_requests}
        late = await client.session.call_tool(
            "send_email", args, input_responses=answers, request_state=first.request_state, allow_input_required=True
        )
    assert not isinstance(late, InputRequiredResult)
    assert late.structured_content and late.structured_content["consent"] == "timed-out"
    assert relay.sent == []


async def test_a_draft_changed_after_the_question_is_asked_about_again_not_sent(
    tmp_path: Path, local_backend: LocalBackendFixture, relay: RecordingRelay, inbox: dict[str, Any]  # noqa: F811
) -> None:
    store = local_backend[0].store
    draft = await store.mail.create_draft(
        inbox["id"], {"to": [NEW], "cc": [], "bcc": [], "subject": "Offer", "plain_body": "v1", "html_body": None,
                      "reply_to_message_id": None},
    )  # fmt: skip
    args = {"inbox_id": inbox["id"], "draft_id": draft["id"]}
    async with mcp(tmp_path, local_backend, Person("accept"), era="2026-07-28") as client:
        first = await client.session.call_tool("send_draft", args, allow_input_required=True)
        assert isinstance(first, InputRequiredResult)
        [request] = first.input_requests.values()
        assert "v1" in request.params.message  # type: ignore[union-attr]
        await store.mail.update_draft(inbox["id"], draft["id"], {"plain_body": "v2: pay to this account instead"})
        answers = {key: ElicitResult(action="accept", content={"send": True}) for key in first.input_requests}
        second = await client.session.call_tool(
            "send_draft", args, input_responses=answers, request_state=first.request_state, allow_input_required=True
        )
        # The yes was for v1: the person is shown v2 and asked again; nothing went out.
        assert isinstance(second, InputRequiredResult)
        [again] = second.input_requests.values()
        assert "v2: pay to this account instead" in again.params.message  # type: ignore[union-attr]
        assert relay.sent == []
        answers = {key: ElicitResult(action="accept", content={"send": True}) for key in second.input_requests}
        third = await client.session.call_tool(
            "send_draft", args, input_responses=answers, request_state=second.request_state, allow_input_required=True
        )
    assert not isinstance(third, InputRequiredResult) and not third.is_error
    assert b"v2: pay to this account instead" in relay.sent[0][2]


async def test_known_recipients_are_not_asked_about(
    tmp_path: Path, local_backend: LocalBackendFixture, relay: RecordingRelay, inbox: dict[str, Any]  # noqa: F811
) -> None:
    person = Person("decline")
    async with mcp(tmp_path, local_backend, person) as client:
        sent = await client.call_tool(
            "send_email", {"inbox_id": inbox["id"], "to": [KNOWN], "subject": "Re: quote", "body": "Yes"}
        )
        reply = await client.call_tool(
            "reply_to_email", {"inbox_id": inbox["id"], "message_id": await _parent(local_backend, inbox["id"]), "body": "Ok"}
        )
    assert not sent.is_error and not reply.is_error
    assert person.questions == [] and len(relay.sent) == 2


async def test_without_elicitation_the_agents_verified_rule_holds(
    tmp_path: Path, local_backend: LocalBackendFixture, relay: RecordingRelay, inbox: dict[str, Any]  # noqa: F811
) -> None:
    args = {"inbox_id": inbox["id"], "to": [NEW], "subject": "Offer", "body": "Hello"}
    async with mcp(tmp_path, local_backend, None) as client:
        refused = await client.call_tool("send_email", args)
        text = refused.content[0].text
        assert refused.is_error and text.startswith("VALIDATION_ERROR: verified: 1 recipient has never written")
        assert NEW in text.split("<<<UNTRUSTED", 1)[1]
        assert relay.sent == []
        sent = await client.call_tool("send_email", {**args, "verified": True})
    assert not sent.is_error and relay.sent[0][1] == [NEW]


@pytest.mark.parametrize(
    ("tool", "args", "new"),
    [
        ("reply_to_email", {"body": "Ok", "bcc": [NEW]}, [NEW]),
        ("reply_to_email", {"body": "Ok", "reply_all": True}, ["boss@example.com"]),
        ("forward_email", {"to": [NEW], "body": "FYI"}, [NEW]),
    ],
    ids=["reply-bcc", "reply-all", "forward"],
)
async def test_every_route_asks_about_its_new_recipients(
    tmp_path: Path, local_backend: LocalBackendFixture, relay: RecordingRelay, inbox: dict[str, Any],  # noqa: F811
    tool: str, args: dict[str, Any], new: list[str],
) -> None:  # fmt: skip
    person = Person("decline")
    parent = await _parent(local_backend, inbox["id"])
    async with mcp(tmp_path, local_backend, person) as client:
        declined = await client.call_tool(tool, {"inbox_id": inbox["id"], "message_id": parent, **args})
        assert declined.structured_content and declined.structured_content["sent"] is False
        [question] = person.questions
        assert all(f"{a} (new)" in question for a in new) and "Subject: " in question
        person.answer = "accept"
        sent = await client.call_tool(tool, {"inbox_id": inbox["id"], "message_id": parent, **args})
    assert not sent.is_error, sent.content[0].text
    assert all(a in relay.sent[0][1] for a in new)
    if args.get("reply_all"):
        data = sent.structured_content or {}
        assert data["added_by_reply_all"] == ["boss@example.com"]
        assert "Reply-all also reached 1 other participant(s)" in sent.content[0].text
        assert "<<<UNTRUSTED" in sent.content[0].text.split("Reply-all also reached")[1]


async def test_confirm_all_asks_even_for_known_recipients(
    tmp_path: Path, local_backend: LocalBackendFixture, relay: RecordingRelay, inbox: dict[str, Any]  # noqa: F811
) -> None:
    person = Person("accept")
    async with mcp(tmp_path, local_backend, person, MAM_MCP_CONFIRM_SENDS="all") as client:
        sent = await client.call_tool(
            "send_email", {"inbox_id": inbox["id"], "to": [KNOWN], "subject": "Hi", "body": "Yes"}
        )
    assert not sent.is_error and len(person.questions) == 1
    assert "confirm_sends=all" in person.questions[0] and len(relay.sent) == 1


@pytest.mark.parametrize("tool", ["send_email", "reply_to_email", "send_draft"])
async def test_confirm_all_without_elicitation_holds_the_message_as_a_draft(
    tmp_path: Path, local_backend: LocalBackendFixture, relay: RecordingRelay, inbox: dict[str, Any], tool: str  # noqa: F811
) -> None:
    store = local_backend[0].store
    if tool == "send_email":
        args: dict[str, Any] = {"to": [KNOWN], "subject": "Hi", "body": "Hold me", "verified": True}
    elif tool == "reply_to_email":
        args = {"message_id": await _parent(local_backend, inbox["id"]), "body": "Hold me"}
    else:
        draft = await store.mail.create_draft(
            inbox["id"], {"to": [KNOWN], "cc": [], "bcc": [], "subject": "Hi", "plain_body": "Hold me",
                          "html_body": None, "reply_to_message_id": None},
        )  # fmt: skip
        args = {"draft_id": draft["id"], "verified": True}
    async with mcp(tmp_path, local_backend, None, MAM_MCP_CONFIRM_SENDS="all") as client:
        held = await client.call_tool(tool, {"inbox_id": inbox["id"], **args})
    assert not held.is_error, held.content[0].text
    data = held.structured_content or {}
    assert data["sent"] is False and data["held"] is True
    assert data["approve_command"] == f"mam-mcp drafts approve {data['draft_id']} --inbox {inbox['id']}"
    assert "awaits human approval" in held.content[0].text and "Do not try to send it yourself" in held.content[0].text
    assert relay.sent == [] and await _outbound(local_backend, inbox["id"]) == []
    kept = await store.mail.get_draft(inbox["id"], data["draft_id"])
    assert kept is not None and kept["plain_body"] == "Hold me"
    if tool == "reply_to_email":
        assert kept["reply_to_message_id"] == args["message_id"] and kept["subject"] == "Re: Quote"


async def test_confirm_off_never_asks(
    tmp_path: Path, local_backend: LocalBackendFixture, relay: RecordingRelay, inbox: dict[str, Any]  # noqa: F811
) -> None:
    person = Person("decline")
    async with mcp(tmp_path, local_backend, person, MAM_MCP_CONFIRM_SENDS="off") as client:
        sent = await client.call_tool(
            "send_email", {"inbox_id": inbox["id"], "to": [NEW], "subject": "CI", "body": "x", "verified": True}
        )
    assert not sent.is_error and person.questions == [] and relay.sent[0][1] == [NEW]
