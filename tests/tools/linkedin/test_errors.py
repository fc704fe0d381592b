"""Each LinkedIn error code reaches the agent as a tool error with the reference's advice as the hint."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from tests.fakes.hosted_api import FakeHostedAPI
from tests.fakes.hosted_linkedin import LinkedInFake
from tests.tools.linkedin.test_intent import RULE, fake, li, linkedin_client, text_of

__all__ = ["fake", "li"]

SEARCH = {"query": "outbound is broken", "intent_description": RULE}


async def test_rate_limited_search_shows_retry_after_and_bucket_and_is_not_retried(
    tmp_path: Path, fake: FakeHostedAPI, li: LinkedInFake
) -> None:
    li.add_session()
    fake.script(
        "POST",
        "/v1/linkedin/searches",
        status=429,
        code="RATE_LIMITED",
        message="too many requests",
        headers={"Retry-After": "30", "X-RateLimit-Bucket": "llm"},
    )
    async with linkedin_client(tmp_path, fake) as client:
        result = await client.call_tool("linkedin_search_posts", SEARCH)
    assert result.is_error
    text = text_of(result)
    assert text.startswith("RATE_LIMITED: too many requests")
    assert "retry after 30s" in text and "rate-limit bucket 'llm'" in text
    assert "do not loop" in text and "llm" in result.structured_content["error"]["bucket"]
    assert len([r for r in fake.requests if r.path == "/v1/linkedin/searches"]) == 1


async def test_linkedin_rate_limited_pinned_session_says_to_auto_distribute(
    tmp_path: Path, fake: FakeHostedAPI, li: LinkedInFake
) -> None:
    paused = li.add_session("CEO", status="rate_limited")
    async with linkedin_client(tmp_path, fake) as client:
        result = await client.call_tool("linkedin_search_posts", {**SEARCH, "session_id": paused})
    assert text_of(result).startswith("LINKEDIN_RATE_LIMITED:")
    assert "Omit session_id" in text_of(result) and "connect another LinkedIn account" in text_of(result)


async def test_no_session_available_says_connect_another_account(
    tmp_path: Path, fake: FakeHostedAPI, li: LinkedInFake
) -> None:
    li.add_session(status="rate_limited")
    async with linkedin_client(tmp_path, fake) as client:
        result = await client.call_tool(
            "linkedin_lookup_profile", {"profile_url": "https://www.linkedin.com/in/jane/"}
        )
    assert text_of(result).startswith("NO_SESSION_AVAILABLE:")
    assert "mam-mcp linkedin connect" in text_of(result)


async def test_session_not_found_says_to_omit_the_session(
    tmp_path: Path, fake: FakeHostedAPI, li: LinkedInFake
) -> None:
    li.add_session()
    async with linkedin_client(tmp_path, fake) as client:
        result = await client.call_tool(
            "linkedin_send_connection_request", {"target": "jane", "session_id": "ses_gone"}
        )
    assert text_of(result).startswith("SESSION_NOT_FOUND:") and "omit session_id" in text_of(result)
    assert not li.invitations


async def test_profile_not_found_is_a_strict_slug_miss(
    tmp_path: Path, fake: FakeHostedAPI, li: LinkedInFake
) -> None:
    li.add_session()
    li.add_profile("jane-smith", name="Jane Smith")
    async with linkedin_client(tmp_path, fake) as client:
        result = await client.call_tool(
            "linkedin_lookup_profile", {"profile_url": "https://www.linkedin.com/in/jane-smyth/"}
        )
    assert text_of(result).startswith("PROFILE_NOT_FOUND:") and "spelling" in text_of(result)


async def test_webhook_limit_reached(tmp_path: Path, fake: FakeHostedAPI, li: LinkedInFake) -> None:
    li.webhook_limit = 0
    async with linkedin_client(tmp_path, fake) as client:
        result = await client.call_tool(
            "linkedin_create_signal",
            {
                "kind": "keyword",
                "name": "n",
                "query": "q q",
                "intent_description": RULE,
                "webhook_url": "https://example.com/hook",
            },
        )
    assert text_of(result).startswith("WEBHOOK_LIMIT_REACHED:") and "delete a stale webhook" in text_of(
        result
    )
    assert not li.signals


async def test_too_many_sessions_from_the_api(tmp_path: Path, fake: FakeHostedAPI) -> None:
    fake.script(
        "GET", "/v1/linkedin/sessions", status=403, code="TOO_MANY_SESSIONS", message="session cap reached"
    )
    async with linkedin_client(tmp_path, fake) as client:
        result = await client.call_tool("linkedin_list_sessions", {})
    assert text_of(result).startswith("TOO_MANY_SESSIONS:") and "revoke" in text_of(result).lower()


async def test_auth_lockout_is_not_retried_and_says_fix_the_key(tmp_path: Path, fake: FakeHostedAPI) -> None:
    fake.script(
        "GET",
        "/v1/linkedin/signals",
        status=429,
        code="AUTH_LOCKOUT",
        message="locked out for 15 min",
        headers={"Retry-After": "900"},
    )
    async with linkedin_client(tmp_path, fake) as client:
        result = await client.call_tool("linkedin_list_signals", {})
    assert text_of(result).startswith("AUTH_LOCKOUT:") and "MYAGENTMAIL_API_KEY" in text_of(result)
    assert len([r for r in fake.requests if r.path == "/v1/linkedin/signals"]) == 1, (
        "retrying extends the lockout"
    )


class AnswerLost(httpx2.AsyncBaseTransport):
    """The request reaches the fake (it runs), then the answer times out on the way back."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, path: str) -> None:
        self.inner = inner
        self.path = path

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path == self.path:
            await response.aclose()
            raise httpx2.ReadTimeout("timed out", request=request)
        return response


@pytest.mark.parametrize(
    ("tool", "arguments", "path", "says"),
    [
        ("linkedin_search_posts", SEARCH, "/v1/linkedin/searches", "the search may have run"),
        (
            "linkedin_send_connection_request",
            {"target": "jane"},
            "/v1/linkedin/connections",
            "the connection request may have been sent",
        ),
        (
            "linkedin_send_message",
            {"recipient": "jane", "text": "hi"},
            "/v1/linkedin/messages",
            "the message may have been delivered",
        ),
    ],
)
async def test_a_timed_out_post_says_it_may_have_run(
    tmp_path: Path,
    fake: FakeHostedAPI,
    li: LinkedInFake,
    tool: str,
    arguments: dict[str, object],
    path: str,
    says: str,
) -> None:
    li.add_session()
    async with linkedin_client(tmp_path, fake, transport=AnswerLost(fake.transport(), path)) as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error
    text = text_of(result)
    assert text.startswith("SEND_OUTCOME_UNKNOWN: " + says), text
    assert "list_messages" not in text, "the hint is LinkedIn's, not the email one"
    assert len([r for r in fake.requests if r.path == path]) == 1, "never retried"


async def test_a_timed_out_run_points_at_the_matches(
    tmp_path: Path, fake: FakeHostedAPI, li: LinkedInFake
) -> None:
    li.add_session()
    signal = li.add_signal()
    path = f"/v1/linkedin/signals/{signal['id']}/run"
    async with linkedin_client(tmp_path, fake, transport=AnswerLost(fake.transport(), path)) as client:
        result = await client.call_tool("linkedin_run_signal", {"signal_id": signal["id"]})
    assert text_of(result).startswith("SEND_OUTCOME_UNKNOWN: the poll may have run")
    assert "linkedin_list_signal_matches" in text_of(result)
