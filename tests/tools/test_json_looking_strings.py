"""Strings that look like JSON stay strings where a tool takes text, and still decode where it takes a list.

The SDK decodes JSON-looking string arguments (some hosts send `["a@b.c"]` as a string for a list); it
also did so for `str | None` arguments, so `query="[1]"` failed validation and `"null"` dropped a filter
silently. Through the in-memory MCP client against the strict hosted fake, both kinds of argument.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.hosted_api import FakeHostedAPI
from tests.tools.test_tools_hosted import connected, requests_to, text_of


@pytest.fixture
def fake() -> FakeHostedAPI:
    from tests.conftest import FAKE_KEY

    return FakeHostedAPI(api_key=FAKE_KEY)


@pytest.mark.parametrize("text", ["[1]", "null", "true", '{"a": 1}', "[ACME] 493817"])
async def test_a_text_argument_is_used_as_the_text_given(tmp_path: Path, fake: FakeHostedAPI, text: str) -> None:
    inbox = fake.seed_inbox("scout")
    fake.deliver_inbound(inbox["id"], from_address="ci@example.com", subject=f"Build {text} passed", plain_body="one")
    fake.deliver_inbound(inbox["id"], from_address="ci@example.com", subject="Build 2 passed", plain_body="two")
    async with connected(tmp_path, fake) as client:
        result = await client.call_tool("list_messages", {"inbox_id": inbox["id"], "query": text})
        assert not result.is_error, text_of(result)
        # Decoded as JSON, "null" dropped the filter and the others failed validation.
        assert [m["subject"] for m in result.structured_content["messages"]] == [f"Build {text} passed"]
        waited = await client.call_tool(
            "wait_for_email", {"inbox_id": inbox["id"], "subject_contains": text, "timeout_seconds": 1}
        )
        assert not waited.is_error and waited.structured_content["found"], text_of(waited)
    assert not fake.violations


async def test_a_list_argument_sent_as_a_json_string_is_still_decoded(tmp_path: Path, fake: FakeHostedAPI) -> None:
    inbox = fake.seed_inbox("sender")
    async with connected(tmp_path, fake) as client:
        result = await client.call_tool(
            "send_email",
            {"inbox_id": inbox["id"], "to": '["lead@example.com"]', "subject": "[1]", "body": "null", "verified": True},
        )
        assert not result.is_error, text_of(result)
    [sent] = requests_to(fake, "POST", "/send")
    assert sent.json["to"] == ["lead@example.com"]
    assert sent.json["subject"] == "[1]" and sent.json["plainBody"] == "null"  # the text arguments as given
    assert not fake.violations
