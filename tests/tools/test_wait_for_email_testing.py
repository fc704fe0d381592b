"""wait_for_email for testing an app's email: plus-address tags, count, expect="none", any inbox.

Real local backend with real SMTP on loopback (tests/event_stack.py) and the MCP tool through the
in-memory client; one server per "CI job", as parallel jobs would run. The strict fake hosted API
answers where hosted behaviour is the point.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from mam_mcp.client import MamClient
from mam_mcp.config import Settings
from mam_mcp.server import build_server
from tests.conftest import make_settings
from tests.event_stack import CODE, LocalStack, hosted_stack, local_stack, verification_mail
from tests.fakes.hosted_api import FakeHostedAPI
from tests.local.conftest import local_backend, local_config  # noqa: F401  (fixtures)

LIST_ANSWERED = r"^GET /v1/inboxes/[^/]+/messages$"
LISTS_BEFORE_WAITING = 2  # per wait: a look at existing mail, subscribe, a second look
STEP = 20.0  # every test step is bounded by this many seconds


@asynccontextmanager
async def mcp_for(stack: Any, settings: Settings) -> AsyncIterator[Client]:
    async def factory(_: Settings) -> MamClient:
        client: MamClient = stack.client()
        return client

    server = build_server(settings, client_factory=factory)
    async with Client(server) as client:
        yield client
    await server.runtime.aclose()  # type: ignore[attr-defined]


@pytest.fixture
async def stack(local_backend: Any) -> AsyncIterator[LocalStack]:  # noqa: F811
    async with local_stack(local_backend) as opened:
        yield opened


async def smtp(stack: LocalStack, to: str, subject: str, sender: str = "noreply@app.example.com") -> None:
    reply = await stack.send_smtp(to, verification_mail(sender, to, subject=subject), sender)
    assert reply.startswith("2"), reply


async def while_waiting(
    stack: LocalStack,
    calls: list[Callable[[], Awaitable[Any]]],
    deliver: Callable[[], Awaitable[None]],
    *,
    inboxes: int = 1,
) -> list[Any]:
    """Run the calls; once every one has looked at existing mail (of `inboxes` inboxes each) and
    subscribed, deliver."""
    listed = stack.watch.answered(LIST_ANSWERED, times=LISTS_BEFORE_WAITING * len(calls) * inboxes)
    results: list[Any] = [None] * len(calls)

    async def run(index: int) -> None:
        results[index] = await calls[index]()

    with anyio.fail_after(STEP):
        async with anyio.create_task_group() as tasks:
            for index in range(len(calls)):
                tasks.start_soon(run, index)
            await listed.wait()
            await deliver()
    return results


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


async def test_two_ci_jobs_with_tags_in_one_inbox_each_see_only_their_own(stack: LocalStack, tmp_path: Path) -> None:
    inbox = await stack.create_inbox("ci")
    domain = domain_of(inbox["email"])
    settings = make_settings(tmp_path, hosted=False)
    async with mcp_for(stack, settings) as job_a, mcp_for(stack, settings) as job_b:
        # The same sign-up mail for both jobs: only the +tag tells them apart.
        async def deliver() -> None:
            await smtp(stack, f"ci+job-b@{domain}", "Confirm your account")
            await smtp(stack, f"ci+job-a@{domain}", "Confirm your account")

        a, b = await while_waiting(
            stack,
            [
                lambda: job_a.call_tool("wait_for_email", {"inbox_id": inbox["id"], "tag": "job-a", "timeout_seconds": 15}),
                lambda: job_b.call_tool(
                    "wait_for_email", {"inbox_id": inbox["id"], "to": f"ci+job-b@{domain}", "timeout_seconds": 15}
                ),
            ],
            deliver,
        )
    for result, tag in ((a, "job-a"), (b, "job-b")):
        assert not result.is_error, result.content[0].text
        data = result.structured_content
        assert data["found"] is True and data["code"] == CODE
        assert data["message"]["tag"] == tag
        assert data["message"]["to"] == [f"ci+{tag}@{domain}"]
    assert a.structured_content["message"]["id"] != b.structured_content["message"]["id"]

    # Mail already there: each job's filter still picks its own, never the other job's.
    async with mcp_for(stack, settings) as job_a_again:
        with anyio.fail_after(STEP):
            again = await job_a_again.call_tool(
                "wait_for_email", {"inbox_id": inbox["id"], "to": f"CI+JOB-A@{domain}", "timeout_seconds": 5}
            )
            none_for_c = await job_a_again.call_tool(
                "wait_for_email", {"inbox_id": inbox["id"], "tag": "job-c", "timeout_seconds": 1}
            )
            listed = await job_a_again.call_tool("list_messages", {"inbox_id": inbox["id"]})
    assert again.structured_content["message"]["id"] == a.structured_content["message"]["id"]
    assert none_for_c.structured_content["found"] is False
    assert sorted(m["tag"] for m in listed.structured_content["messages"]) == ["job-a", "job-b"]  # summaries too


async def test_count_three_returns_all_three_oldest_first(stack: LocalStack, tmp_path: Path) -> None:
    inbox = await stack.create_inbox("orders")
    await smtp(stack, inbox["email"], "Order update #1")  # already there when the wait starts
    async with mcp_for(stack, make_settings(tmp_path, hosted=False)) as client:

        async def deliver() -> None:
            await smtp(stack, inbox["email"], "Weekly newsletter")  # does not match the filter
            await smtp(stack, inbox["email"], "Order update #2")
            await smtp(stack, inbox["email"], "Order update #3")

        (result,) = await while_waiting(
            stack,
            [lambda: client.call_tool(
                "wait_for_email",
                {"inbox_id": inbox["id"], "subject_contains": "order update", "count": 3, "timeout_seconds": 15},
            )],  # fmt: skip
            deliver,
        )
        assert not result.is_error, result.content[0].text
        data = result.structured_content
        assert data["found"] is True and data["count"] == 3
        subjects = [item["message"]["subject"] for item in data["messages"]]
        assert subjects == ["Order update #1", "Order update #2", "Order update #3"]
        assert all(item["code"] == CODE for item in data["messages"])
        assert data["cursor"] == data["messages"][-1]["cursor"]
        assert "Found 3 messages" in result.content[0].text
        # All three were returned: none of them satisfies the next wait in this session.
        with anyio.fail_after(STEP):
            after = await client.call_tool(
                "wait_for_email", {"inbox_id": inbox["id"], "subject_contains": "order update", "timeout_seconds": 1}
            )
        assert after.structured_content["found"] is False


async def test_count_not_reached_is_found_false_and_returns_none_of_them(stack: LocalStack, tmp_path: Path) -> None:
    inbox = await stack.create_inbox("partial")
    await smtp(stack, inbox["email"], "Only one")
    async with mcp_for(stack, make_settings(tmp_path, hosted=False)) as client:
        with anyio.fail_after(STEP):
            short = await client.call_tool("wait_for_email", {"inbox_id": inbox["id"], "count": 2, "timeout_seconds": 1})
            single = await client.call_tool("wait_for_email", {"inbox_id": inbox["id"], "timeout_seconds": 5})
    assert not short.is_error
    assert short.structured_content["found"] is False
    assert "only 1 of 2" in short.content[0].text
    # The one that came was not handed out, so a wait for one still gets it.
    assert short.structured_content["matched_ids"] == [single.structured_content["message"]["id"]]


async def test_expect_none_passes_on_silence_even_with_other_mail_arriving(stack: LocalStack, tmp_path: Path) -> None:
    inbox = await stack.create_inbox("quiet")
    domain = domain_of(inbox["email"])
    async with mcp_for(stack, make_settings(tmp_path, hosted=False)) as client:

        async def deliver() -> None:
            await smtp(stack, f"quiet+other-job@{domain}", "Password reset")  # another job's tag

        (result,) = await while_waiting(
            stack,
            [lambda: client.call_tool(
                "wait_for_email", {"inbox_id": inbox["id"], "tag": "my-job", "expect": "none", "timeout_seconds": 2}
            )],  # fmt: skip
            deliver,
        )
    assert not result.is_error, result.content[0].text
    assert result.structured_content["found"] is False
    assert result.content[0].text.startswith("As expected, no matching email arrived within 2 s")


async def test_expect_none_fails_naming_the_offending_message(stack: LocalStack, tmp_path: Path) -> None:
    inbox = await stack.create_inbox("assert")
    async with mcp_for(stack, make_settings(tmp_path, hosted=False)) as client:

        async def deliver() -> None:
            await smtp(stack, inbox["email"], "Your invoice", sender="billing@app.example.com")

        (result,) = await while_waiting(
            stack,
            [lambda: client.call_tool(
                "wait_for_email",
                {"inbox_id": inbox["id"], "from_contains": "billing@", "expect": "none", "timeout_seconds": 15},
            )],  # fmt: skip
            deliver,
        )
    stored = (await stack.client().messages.list(inbox["id"])).messages
    assert len(stored) == 1
    assert result.is_error
    text = result.content[0].text
    assert text.startswith(f"UNEXPECTED_EMAIL: expected no matching email, but message {stored[0].id} arrived")
    assert "Subject: Your invoice" in text and "From: Acme <billing@app.example.com>" in text  # fenced, quoted
    error = result.structured_content["error"]
    assert error["code"] == "UNEXPECTED_EMAIL"
    assert error["details"]["message_id"] == stored[0].id and error["details"]["inbox_id"] == inbox["id"]


async def test_expect_none_with_count_is_refused(stack: LocalStack, tmp_path: Path) -> None:
    inbox = await stack.create_inbox("refuse")
    async with mcp_for(stack, make_settings(tmp_path, hosted=False)) as client:
        result = await client.call_tool("wait_for_email", {"inbox_id": inbox["id"], "expect": "none", "count": 2})
    assert result.is_error and result.content[0].text.startswith("VALIDATION_ERROR: count:")


async def test_without_an_inbox_the_wait_covers_every_inbox_of_the_tenant_key(stack: LocalStack, tmp_path: Path) -> None:
    first = await stack.create_inbox("alpha")
    second = await stack.create_inbox("beta")
    await smtp(stack, first["email"], "Old news")  # there before the wait, but filtered out
    async with mcp_for(stack, make_settings(tmp_path, hosted=False)) as client:

        async def deliver() -> None:
            await smtp(stack, second["email"], "Confirm your beta account")

        (result,) = await while_waiting(
            stack,
            [lambda: client.call_tool("wait_for_email", {"subject_contains": "confirm", "timeout_seconds": 15})],
            deliver,
            inboxes=2,
        )
        assert not result.is_error, result.content[0].text
        data = result.structured_content
        assert data["found"] is True and data["via"] == "websocket"
        assert data["message"]["inbox_id"] == second["id"]
        assert data["message"]["subject"] == "Confirm your beta account"
        # Mail already in any inbox is found by the first look, across inboxes.
        with anyio.fail_after(STEP):
            old = await client.call_tool("wait_for_email", {"subject_contains": "old news", "timeout_seconds": 5})
    assert old.structured_content["via"] == "existing"
    assert old.structured_content["message"]["inbox_id"] == first["id"]


async def test_any_inbox_wait_in_hosted_mode_and_tag_is_refused_there(tmp_path: Path) -> None:
    fake = FakeHostedAPI()
    one, two = fake.seed_inbox("one"), fake.seed_inbox("two")
    fake.deliver_inbound(two["id"], from_address="svc@svc.example", subject="Your code", plain_body=f"Code {CODE}")
    async with hosted_stack(fake) as hosted, mcp_for(hosted, make_settings(tmp_path)) as client:
        with anyio.fail_after(STEP):
            found = await client.call_tool("wait_for_email", {"timeout_seconds": 5})
            tagged = await client.call_tool("wait_for_email", {"inbox_id": one["id"], "tag": "run1"})
    assert found.structured_content["found"] is True
    assert found.structured_content["message"]["inbox_id"] == two["id"]
    assert tagged.is_error
    assert tagged.content[0].text.startswith("VALIDATION_ERROR: tag: hosted messages carry no plus-address tag")
    assert "`to`" in tagged.content[0].text
    assert not fake.violations


async def test_any_inbox_wait_in_hosted_mode_gets_mail_arriving_while_it_waits(tmp_path: Path) -> None:
    fake = FakeHostedAPI()
    fake.seed_inbox("one")
    two = fake.seed_inbox("two")
    async with hosted_stack(fake) as hosted, mcp_for(hosted, make_settings(tmp_path)) as client:
        listed = hosted.watch.answered(LIST_ANSWERED, times=LISTS_BEFORE_WAITING * 2)  # two inboxes
        outcome: dict[str, Any] = {}

        async def call() -> None:
            outcome["result"] = await client.call_tool("wait_for_email", {"timeout_seconds": 15})

        with anyio.fail_after(STEP):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(call)
                await listed.wait()
                fake.deliver_inbound(two["id"], from_address="svc@svc.example", subject="Code", plain_body=f"{CODE}")
    data = outcome["result"].structured_content
    assert data["found"] is True and data["via"] == "websocket"
    assert data["message"]["inbox_id"] == two["id"] and data["code"] == CODE
    assert not fake.violations
