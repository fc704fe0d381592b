"""The client refuses header-breaking arguments before any call, in hosted and local mode alike."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mam_mcp.client import MamClient
from mam_mcp.client.errors import ValidationFailed
from tests.fakes.hosted_api import FakeHostedAPI
from tests.injection_corpus import INJECTIONS

Call = Callable[[MamClient], Awaitable[Any]]

CALLS: dict[str, tuple[str, Call]] = {
    "send subject": ("subject", lambda c: c.messages.send("i", to=["a@example.com"], subject=INJECTIONS["q-crlf"])),
    "send cc": ("cc", lambda c: c.messages.send("i", to=["a@example.com"], subject="s", cc=[INJECTIONS["u2028"]])),
    "send to": ("to", lambda c: c.messages.send("i", to=[INJECTIONS["lf"]], subject="s")),
    "reply bcc": ("bcc", lambda c: c.messages.reply("i", "m", plain_body="b", bcc=[INJECTIONS["b-crlf"]])),
    "forward to": ("to", lambda c: c.messages.forward("i", "m", to=[INJECTIONS["nel"]])),
    "draft subject": ("subject", lambda c: c.drafts.create("i", subject=INJECTIONS["utf16-crlf"])),
    "draft update cc": ("cc", lambda c: c.drafts.update("i", "d", cc=[INJECTIONS["vt"]])),
    "inbox display name": ("display_name", lambda c: c.inboxes.update("i", display_name=INJECTIONS["nested"])),
}


@pytest.mark.parametrize(("argument", "call"), CALLS.values(), ids=CALLS.keys())
async def test_hosted_client_refuses_before_the_request_and_names_the_argument(argument: str, call: Call) -> None:
    fake = FakeHostedAPI(api_key="tk_fake_0123456789abcdef")
    async with MamClient(base_url="http://fake", api_key=fake.api_key, transport=fake.transport()) as client:
        with pytest.raises(ValidationFailed) as refused:
            await call(client)
    assert refused.value.message.startswith(f"{argument}: must be a single line")
    assert refused.value.details == [{"path": argument, "message": refused.value.message.split(": ", 1)[1]}]
    assert fake.requests == [], "nothing was sent to the API"
