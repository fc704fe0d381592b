"""The linkedin_signals, linkedin_posts and linkedin_sessions toolsets through the in-memory MCP client."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fakes.hosted_api import FakeHostedAPI
from tests.fakes.hosted_linkedin import LinkedInFake
from tests.tools.linkedin.test_intent import (
    RULE,
    fake,
    li,
    linkedin_client,
    linkedin_requests,
    search_hit,
    text_of,
)

__all__ = ["fake", "li"]  # fixtures shared with test_intent

POST_URN = "urn:li:activity:7332661864792854528"
CONVERSATION_URN = "urn:li:msg_conversation:(urn:li:fsd_profile:ACoAAB,2-abc==)"


# --- linkedin_signals -------------------------------------------------------------------------------------
async def test_get_update_pause_and_delete_a_signal(
    tmp_path: Path, fake: FakeHostedAPI, li: LinkedInFake
) -> None:
    signal = li.add_signal("Complainers", webhook_url="https://example.com/hook")
    li.signal_secrets[signal["id"]] = "whsec_secret_value"
    async with linkedin_client(tmp_path, fake) as client:
        got = await client.call_tool("linkedin_get_signal", {"signal_id": signal["id"]})
        paused = await client.call_tool(
            "linkedin_update_signal",
            {"signal_id": signal["id"], "enabled": False, "cadence": "daily", "intent_description": RULE},
        )
        empty = await client.call_tool("linkedin_update_signal", {"signal_id": signal["id"]})
        deleted = await client.call_tool("linkedin_delete_signal", {"signal_id": signal["id"]})
        gone = await client.call_tool("linkedin_get_signal", {"signal_id": signal["id"]})
    assert not got.is_error and got.structured_content["intent_description"].startswith("Founders")
    assert "whsec_secret_value" not in text_of(got) + json.dumps(got.structured_content)
    patch = next(r for r in fake.requests if r.method == "PATCH")
    assert patch.json == {"intentDescription": RULE, "cadence": "daily", "enabled": False}
    assert paused.structured_content["enabled"] is False and "paused" in text_of(paused)
    assert empty.is_error and "nothing to update" in text_of(empty)
    assert not deleted.is_error and gone.is_error and text_of(gone).startswith("NOT_FOUND")


async def test_run_signal_uses_the_long_timeout_reports_progress_and_new_matches(
    tmp_path: Path, fake: FakeHostedAPI, li: LinkedInFake
) -> None:
    li.add_session()
    signal = li.add_signal()
    li.pending_matches[signal["id"]] = [
        {
            "id": "m9",
            "postUrl": "https://www.linkedin.com/feed/update/x/",
            "postExcerpt": "help",
            "author": {"name": "A"},
        }
    ]
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with linkedin_client(tmp_path, fake) as client:
        ran = await client.call_tool(
            "linkedin_run_signal", {"signal_id": signal["id"]}, progress_callback=on_progress
        )
        matches = await client.call_tool("linkedin_list_signal_matches", {"signal_id": signal["id"]})
    assert not ran.is_error, text_of(ran)
    assert ran.structured_content["result"]["newMatches"] == 1 and "newMatches 1" in text_of(ran)
    assert progress, "progress is sent while the synchronous poll runs"
    assert [m["id"] for m in matches.structured_content["matches"]] == ["m9"]
    run = next(r for r in fake.requests if r.path.endswith("/run"))
    assert run.json is None and run.headers.get("idempotency-key")


async def test_deliveries_and_test_webhook(tmp_path: Path, fake: FakeHostedAPI, li: LinkedInFake) -> None:
    signal = li.add_signal(webhook_url="https://example.com/hook")
    bare = li.add_signal("no hook")
    async with linkedin_client(tmp_path, fake) as client:
        tested = await client.call_tool("linkedin_test_signal_webhook", {"signal_id": signal["id"]})
        log = await client.call_tool("linkedin_list_signal_deliveries", {"signal_id": signal["id"]})
        refused = await client.call_tool("linkedin_test_signal_webhook", {"signal_id": bare["id"]})
    assert not tested.is_error and "accepted (HTTP 200)" in text_of(tested)
    assert log.structured_content["count"] == 1 and "delivered" in text_of(log)
    assert refused.is_error and "no webhookUrl" in text_of(refused)


async def test_watchlist_list_add_and_remove(tmp_path: Path, fake: FakeHostedAPI, li: LinkedInFake) -> None:
    signal = li.add_signal("Champions", kind="job_change_watchlist", query=None)
    async with linkedin_client(tmp_path, fake) as client:
        added = await client.call_tool(
            "linkedin_add_watchlist_entries",
            {"signal_id": signal["id"], "profile_urls": ["https://www.linkedin.com/in/new-target/"]},
        )
        bad = await client.call_tool(
            "linkedin_add_watchlist_entries",
            {"signal_id": signal["id"], "profile_urls": ["https://www.linkedin.com/company/acme/"]},
        )
        listed = await client.call_tool("linkedin_list_watchlist", {"signal_id": signal["id"]})
        entry_id = listed.structured_content["entries"][0]["id"]
        removed = await client.call_tool(
            "linkedin_remove_watchlist_entry", {"signal_id": signal["id"], "entry_id": entry_id}
        )
        after = await client.call_tool("linkedin_list_watchlist", {"signal_id": signal["id"]})
    assert not added.is_error, text_of(added)
    post = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/watchlist")]
    assert [r.json for r in post] == [
        {"entries": [{"profileUrl": "https://www.linkedin.com/in/new-target/"}]}
    ]
    assert bad.is_error and "profile_urls.0" in text_of(bad)
    assert "new-target" in text_of(listed)
    assert not removed.is_error and after.structured_content["count"] == 0


async def test_list_and_reopen_searches_for_free(
    tmp_path: Path, fake: FakeHostedAPI, li: LinkedInFake
) -> None:
    li.add_session()
    li.search_results = [search_hit("Jane Smith", "Founder", "Acme", "jane-smith", "outbound is dead")]
    async with linkedin_client(tmp_path, fake) as client:
        run = await client.call_tool(
            "linkedin_search_posts", {"query": "outbound", "intent_description": RULE}
        )
        listed = await client.call_tool("linkedin_list_searches", {"limit": 5})
        reopened = await client.call_tool(
            "linkedin_get_search", {"search_id": run.structured_content["search_id"]}
        )
    assert listed.structured_content["searches"][0]["result_count"] == 1
    assert reopened.structured_content["results"] == run.structured_content["results"]
    assert [r.query for r in fake.requests if r.path == "/v1/linkedin/searches" and r.method == "GET"] == [
        {"limit": "5"}
    ]


# --- linkedin_posts ---------------------------------------------------------------------------------------
async def test_search_content_sends_the_documented_body_with_the_only_session(
    tmp_path: Path, fake: FakeHostedAPI, li: LinkedInFake
) -> None:
    sid = li.add_session()
    li.content_posts = [
        {
            "postUrl": "https://www.linkedin.com/feed/update/urn:li:activity:7332661864792854528/",
            "authorName": "Jane",
            "authorProfileUrl": "https://www.linkedin.com/in/jane/",
            "excerpt": "cold email is dead",
        }
    ]
    async with linkedin_client(tmp_path, fake) as client:
        result = await client.call_tool(
            "linkedin_search_content", {"keyword": "cold email", "date_posted": "past-week", "count": 5}
        )
        too_many = await client.call_tool("linkedin_search_content", {"keyword": "cold email", "count": 26})
    assert not result.is_error, text_of(result)
    body = next(r for r in fake.requests if r.path == "/v1/linkedin/search/content").json
    assert body == {"sessionId": sid, "keyword": "cold email", "datePosted": "past-week", "count": 5}
    assert result.structured_content["posts"][0]["author"]["name"] == "Jane" and "<<<UNTRUSTED" in text_of(
        result
    )
    assert too_many.is_error and text_of(too_many).startswith("VALIDATION_ERROR: count")


async def test_author_posts_comments_and_reactions_encode_the_urn(
    tmp_path: Path, fake: FakeHostedAPI, li: LinkedInFake
) -> None:
    sid = li.add_session()
    li.author_posts["acme"] = [
        {
            "urn": POST_URN,
            "postUrl": f"https://www.linkedin.com/feed/update/{POST_URN}/",
            "excerpt": "We shipped replay",
            "authorName": "Acme",
        }
    ]
    li.comments[POST_URN] = [
        {
            "author": {"name": "Jane", "profileUrl": "https://www.linkedin.com/in/jane/"},
            "text": "We're hitting this exact problem",
        }
    ]
    li.reactions[POST_URN] = [{"actor": {"name": "Raj"}, "reactionType": "CELEBRATE"}]
    async with linkedin_client(tmp_path, fake) as client:
        posts = await client.call_tool(
            "linkedin_list_author_posts", {"author_url": "https://www.linkedin.com/company/acme/", "count": 3}
        )
        comments = await client.call_tool(
            "linkedin_list_post_comments", {"post_urn": f"https://www.linkedin.com/feed/update/{POST_URN}/"}
        )
        reactions = await client.call_tool(
            "linkedin_list_post_reactions", {"post_urn": POST_URN, "count": 10}
        )
        bad = await client.call_tool("linkedin_list_post_reactions", {"post_urn": "activity 12"})
    assert posts.structured_content["posts"][0]["urn"] == POST_URN
    assert comments.structured_content["comments"][0]["text"] == "We're hitting this exact problem"
    assert reactions.structured_content["reactions"] == [
        {
            "author": {"name": "Raj", "role": None, "company": None, "headline": None, "profile_url": None},
            "reaction": "CELEBRATE",
        }
    ]
    assert "CELEBRATE: Raj" in text_of(reactions)
    assert bad.is_error and "post URN" in text_of(bad)
    by_author = next(r for r in fake.requests if r.path == "/v1/linkedin/posts/by-author")
    assert by_author.query == {
        "sessionId": sid,
        "profileUrl": "https://www.linkedin.com/company/acme/",
        "count": "3",
    }
    assert not fake.violations, "URNs arrived percent-encoded"


async def test_get_conversation(tmp_path: Path, fake: FakeHostedAPI, li: LinkedInFake) -> None:
    li.add_session()
    li.thread_messages[CONVERSATION_URN] = [
        {
            "messageUrn": "urn:li:msg_message:2",
            "text": "Talk Tuesday?",
            "isFromViewer": False,
            "sender": {"name": "Jane Smith"},
            "sentAt": "2026-04-27T10:00:00Z",
        },
        {
            "messageUrn": "urn:li:msg_message:1",
            "text": "Thanks for connecting",
            "isFromViewer": True,
            "sender": {"name": "Me"},
            "sentAt": "2026-04-26T10:00:00Z",
        },
    ]
    async with linkedin_client(tmp_path, fake) as client:
        result = await client.call_tool("linkedin_get_conversation", {"conversation_urn": CONVERSATION_URN})
    assert not result.is_error, text_of(result)
    assert "Jane Smith: Talk Tuesday?" in text_of(result) and "me: Thanks for connecting" in text_of(result)
    assert [m["from_me"] for m in result.structured_content["messages"]] == [False, True]
    assert not fake.violations


# --- linkedin_sessions ----------------------------------------------------------------------------------------
async def test_sessions_utilization_and_revoke(tmp_path: Path, fake: FakeHostedAPI, li: LinkedInFake) -> None:
    a = li.add_session("Founder")
    b = li.add_session("CEO", status="rate_limited")
    li.usage[a] = {"profile_lookup": 28}
    li.sessions[a]["liAt"] = "AQEDAR-undocumented-cookie"  # a field the API might add: never echoed
    async with linkedin_client(tmp_path, fake) as client:
        listed = await client.call_tool("linkedin_list_sessions", {})
        usage = await client.call_tool("linkedin_session_utilization", {})
        revoked = await client.call_tool("linkedin_revoke_session", {"session_id": b})
        again = await client.call_tool("linkedin_revoke_session", {"session_id": b})
    assert {s["id"] for s in listed.structured_content["sessions"]} == {a, b}
    assert "Founder: active" in text_of(listed)
    assert "AQEDAR" not in text_of(listed) + json.dumps(listed.structured_content)
    assert usage.structured_content["budget"]["profile_lookup"] == 30
    assert "profile_lookup 2/30" in text_of(usage) and "PAUSED until" in text_of(usage)
    assert "mam-mcp linkedin connect" in text_of(usage), "low headroom everywhere: suggest another account"
    assert not revoked.is_error and li.sessions[b]["status"] == "revoked"
    assert again.is_error and text_of(again).startswith("SESSION_NOT_FOUND")


async def test_every_linkedin_tool_is_hosted_only(tmp_path: Path, fake: FakeHostedAPI) -> None:
    from mam_mcp.tools.catalog import load_toolsets

    sets = {
        ts.name: ts
        for ts in load_toolsets(["linkedin", "linkedin_signals", "linkedin_posts", "linkedin_sessions"])
    }
    assert all(ts.hosted_only for ts in sets.values())
    assert [len(ts.specs) for ts in sets.values()] == [8, 11, 5, 3]
    assert not linkedin_requests(fake)
