"""Idempotency keys: one per logical request, the same when a tool call runs again, never shared."""

from __future__ import annotations

import httpx2
import pytest

from mam_mcp.client.errors import ConnectionFailed, WriteOutcomeUnknown
from mam_mcp.client.http import HttpCore, check_hint
from mam_mcp.client.idempotency import request_key, tool_call


def test_a_rerun_tool_call_gives_its_writes_the_same_keys() -> None:
    with tool_call() as call:
        first = [request_key("POST", "/inboxes/a/drafts", {"subject": "s"}), request_key("POST", "/webhooks", {"url": "u"})]
        call.restart()
        again = [request_key("POST", "/inboxes/a/drafts", {"subject": "s"}), request_key("POST", "/webhooks", {"url": "u"})]
    assert first == again and first[0] != first[1]
    assert all(1 <= len(key) <= 200 for key in first)


def test_keys_differ_between_calls_bodies_and_positions() -> None:
    with tool_call():
        a = request_key("POST", "/inboxes/a/drafts", {"subject": "s"})
        same_request_later = request_key("POST", "/inboxes/a/drafts", {"subject": "s"})
    with tool_call() as call:
        other_call = request_key("POST", "/inboxes/a/drafts", {"subject": "s"})
        call.restart()
        other_body = request_key("POST", "/inboxes/a/drafts", {"subject": "t"})
    assert len({a, same_request_later, other_call, other_body}) == 4
    assert request_key("POST", "/x", None) != request_key("POST", "/x", None)  # outside a call: random


def test_the_hint_names_what_to_list() -> None:
    assert "list_drafts" in check_hint("POST", "/inboxes/a/drafts")
    assert "list_webhooks" in check_hint("POST", "/webhooks")
    assert "list_workspace_keys" in check_hint("POST", "/workspaces/w/keys")
    assert "cannot be listed" in check_hint("POST", "/inboxes/a/keys")
    assert "check" in check_hint("DELETE", "/inboxes/a")


async def test_a_retried_write_that_cannot_connect_again_is_outcome_unknown_not_nothing_sent() -> None:
    """The first attempt went out (its answer was lost): a refused retry must not read as "nothing sent"."""
    attempts: list[str | None] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        attempts.append(request.headers.get("Idempotency-Key"))
        if len(attempts) == 1:
            raise httpx2.ReadTimeout("answer lost", request=request)
        raise httpx2.ConnectError("refused", request=request)

    core = HttpCore(base_url="http://local.test", api_key="tk_test", transport=httpx2.MockTransport(answer), write_retries=1)
    with pytest.raises(WriteOutcomeUnknown) as lost:
        await core.request("POST", "/inboxes/a/drafts", json={"subject": "s"})
    assert len(attempts) == 2 and attempts[0] == attempts[1] and attempts[0]  # the same key both times
    assert "may have been carried out" in lost.value.message and "list_drafts" in (lost.value.hint or "")

    refused_at_once = HttpCore(
        base_url="http://local.test", api_key="tk_test",
        transport=httpx2.MockTransport(lambda r: (_ for _ in ()).throw(httpx2.ConnectError("refused", request=r))),
        write_retries=1,
    )  # fmt: skip
    with pytest.raises(ConnectionFailed):  # never sent: safe to say so
        await refused_at_once.request("POST", "/inboxes/a/drafts", json={"subject": "s"})
