"""The LinkedIn client: local checks, URN encoding, per-route timeouts; the signal signature helper."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator

import httpx2
import pytest

from mam_mcp.client import MamClient
from mam_mcp.client.errors import MamError, ValidationFailed
from mam_mcp.client.linkedin import signal_body
from mam_mcp.client.linkedin_input import (
    check_connection_note,
    check_conversation_urn,
    check_post_urn,
    check_profile_ref,
)
from mam_mcp.signatures import SIGNAL_SIGNATURE_HEADER as SIGNATURE_HEADER
from mam_mcp.signatures import sign_signal_body, verify_signal_signature
from tests.conftest import FAKE_KEY
from tests.fakes.hosted_api import FakeHostedAPI
from tests.fakes.hosted_linkedin import linkedin_of


class TimeoutRecorder(httpx2.AsyncBaseTransport):
    """Passes requests to the fake and records the read timeout and raw path each one carried."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.seen: list[tuple[str, str, float | None]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeout = request.extensions.get("timeout", {}).get("read")
        self.seen.append((request.method, request.url.raw_path.decode("ascii"), timeout))
        return await self.inner.handle_async_request(request)


@pytest.fixture
def fake() -> FakeHostedAPI:
    return FakeHostedAPI(api_key=FAKE_KEY)


@pytest.fixture
async def recorder(fake: FakeHostedAPI) -> TimeoutRecorder:
    return TimeoutRecorder(fake.transport())


@pytest.fixture
async def client(recorder: TimeoutRecorder) -> AsyncIterator[MamClient]:
    async with MamClient(base_url="http://fake", api_key=FAKE_KEY, transport=recorder) as mam:
        yield mam


async def test_searches_and_signal_runs_get_the_90s_timeout_others_the_default(
    client: MamClient, fake: FakeHostedAPI, recorder: TimeoutRecorder
) -> None:
    li = linkedin_of(fake)
    li.add_session()
    signal = li.add_signal()
    await client.linkedin.searches.run(query="q", intent_description="rule")
    await client.linkedin.signals.run(signal["id"])
    await client.linkedin.signals.list()
    timeouts = {(method, path.split("?")[0]): t for method, path, t in recorder.seen}
    assert timeouts[("POST", "/v1/linkedin/searches")] == 90.0
    assert timeouts[("POST", f"/v1/linkedin/signals/{signal['id']}/run")] == 90.0
    assert timeouts[("GET", "/v1/linkedin/signals")] == 20.0


async def test_post_and_conversation_urns_are_one_encoded_path_segment(
    client: MamClient, fake: FakeHostedAPI, recorder: TimeoutRecorder
) -> None:
    li = linkedin_of(fake)
    sid = li.add_session()
    urn = "urn:li:msg_conversation:(urn:li:fsd_profile:ACoAAB,2-abc==)"
    li.thread_messages[urn] = [{"messageUrn": "m1", "text": "hi"}]
    await client.linkedin.posts.comments("urn:li:activity:7332661864792854528", session_id=sid)
    messages = await client.linkedin.conversations.messages(urn, session_id=sid)
    assert messages.messages[0].text == "hi"
    paths = [path for _, path, _ in recorder.seen]
    assert paths[0].startswith("/v1/linkedin/posts/urn%3Ali%3Aactivity%3A7332661864792854528/comments?")
    assert paths[1].startswith(
        "/v1/linkedin/conversations/urn%3Ali%3Amsg_conversation%3A%28urn%3Ali%3Afsd_profile"
        "%3AACoAAB%2C2-abc%3D%3D%29/messages?"
    )
    assert not fake.violations


async def test_local_checks_raise_before_any_request(client: MamClient, fake: FakeHostedAPI) -> None:
    with pytest.raises(ValidationFailed, match="note: the note is 201 characters"):
        await client.linkedin.connections.send("jane", message="x" * 201)
    with pytest.raises(ValidationFailed, match="count: must be between 1 and 25"):
        await client.linkedin.search.content("q", session_id="s", count=0)
    with pytest.raises(ValidationFailed, match="limit: must be between 1 and 100"):
        await client.linkedin.searches.run(query="q", intent_description="r", limit=101)
    with pytest.raises(ValidationFailed, match="profile_url: not a LinkedIn profile URL"):
        await client.linkedin.profiles.lookup("https://www.linkedin.com/company/acme/")
    with pytest.raises(ValidationFailed, match="author_url"):
        await client.linkedin.posts.by_author("https://evil.example/in/x", session_id="s")
    with pytest.raises(ValidationFailed, match="exactly one of recipient or conversation_urn"):
        await client.linkedin.messages.send(session_id="s", text="hi")
    assert fake.requests == []


def test_connection_note_limits_count_characters_and_bytes() -> None:
    assert check_connection_note("a" * 200) == "a" * 200
    assert check_connection_note("é" * 100) == "é" * 100  # 200 bytes exactly
    with pytest.raises(ValueError, match="101 characters but 201 UTF-8 bytes.*Shorten it"):
        check_connection_note("é" * 100 + "!")
    with pytest.raises(ValueError, match="that makes it 200 bytes and it fits"):
        check_connection_note("—" * 10 + "a" * 190)
    with pytest.raises(ValueError, match="that makes it 210 bytes; shorten it too"):
        check_connection_note("—" * 10 + "é" * 100)


def test_urn_and_profile_reference_shapes() -> None:
    assert (
        check_post_urn("https://www.linkedin.com/feed/update/urn:li:ugcPost:7332661864792854528/")
        == "urn:li:ugcPost:7332661864792854528"
    )
    for bad in (
        "activity:123",
        "urn:li:activity:12",
        "https://example.com/?u=urn:li:activity:7332661864792854528",
    ):
        with pytest.raises(ValueError):
            check_post_urn(bad)
    with pytest.raises(ValueError):
        check_conversation_urn("not a urn")
    for good in (
        "https://www.linkedin.com/in/jane-smith/",
        "jane-smith",
        "ACoAABcdEf",
        "urn:li:fsd_profile:ACoAAB",
    ):
        assert check_profile_ref(good) == good
    for bad in ("https://www.linkedin.com/company/acme/", "jane smith", "../../etc"):
        with pytest.raises(ValueError):
            check_profile_ref(bad)


def test_signal_body_per_kind() -> None:
    assert signal_body(
        kind="engagement", name="n", intent_description="rule", target_url="https://www.linkedin.com/in/jane/"
    ) == {
        "kind": "engagement",
        "name": "n",
        "intentDescription": "rule",
        "target": {"kind": "profile", "url": "https://www.linkedin.com/in/jane/"},
    }
    with pytest.raises(ValidationFailed, match="at most 500"):
        signal_body(
            kind="job_change_watchlist",
            name="n",
            intent_description="rule",
            profile_urls=[f"https://www.linkedin.com/in/p{i}/" for i in range(501)],
        )


def test_signature_verification_is_hmac_sha256_v1_hex() -> None:
    body = b'{"type":"signal.match","signal":{"id":"sig_1"}}'
    secret = "whsec_0123"
    header = "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert SIGNATURE_HEADER == "X-MyAgentMail-Signature"
    assert sign_signal_body(secret, body) == header
    assert verify_signal_signature(secret, body, header)
    assert verify_signal_signature(secret.encode(), body, " " + header.upper().replace("V1=", "v1=") + " ")
    assert not verify_signal_signature(secret, body + b" ", header), "any change to the raw body fails"
    assert not verify_signal_signature("other", body, header)
    assert not verify_signal_signature(secret, body, header.removeprefix("v1="))
    assert not verify_signal_signature(secret, body, None)
    assert not verify_signal_signature(secret, body, "v1=ünïcode")
    assert not verify_signal_signature("", body, header)


async def test_post_reads_spend_quota_so_a_bad_gateway_is_not_retried(client: MamClient, fake: FakeHostedAPI) -> None:
    session = linkedin_of(fake).add_session()
    fake.script("GET", "/v1/linkedin/posts/by-author", status=502, code="PROVIDER_ERROR")
    with pytest.raises(MamError) as caught:
        await client.linkedin.posts.by_author("https://www.linkedin.com/in/jane-doe/", session_id=session)
    assert caught.value.code == "PROVIDER_ERROR"
    assert len([r for r in fake.requests if r.path == "/v1/linkedin/posts/by-author"]) == 1
    fake.script("GET", "/v1/inboxes", status=502, code="PROVIDER_ERROR")  # an ordinary read still is
    await client.inboxes.list()
    assert [r.status for r in fake.requests if r.path == "/v1/inboxes"] == [502, 200]
