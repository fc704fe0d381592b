"""`mam-mcp linkedin connect`: password + PIN, password + mobile approval, cookie import, refusals."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mam_mcp.cli import build_parser
from mam_mcp.client import MamClient
from mam_mcp.commands.linkedin import ConsoleTerminal, connect_account, list_sessions, run
from tests.conftest import FAKE_KEY, make_settings
from tests.fakes.hosted_api import FakeHostedAPI
from tests.fakes.hosted_linkedin import LinkedInFake, linkedin_of

PASSWORD = "correct horse battery staple"


class ScriptedTerminal:
    """Answers prompts from a list; records what was shown and which prompts were secret."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = list(answers)
        self.prompts: list[tuple[str, bool]] = []
        self.shown: list[str] = []

    def ask(self, prompt: str) -> str:
        self.prompts.append((prompt, False))
        return self.answers.pop(0)

    def secret(self, prompt: str) -> str:
        self.prompts.append((prompt, True))
        return self.answers.pop(0)

    def say(self, text: str) -> None:
        self.shown.append(text)

    @property
    def output(self) -> str:
        return "\n".join(self.shown)


@pytest.fixture
def fake() -> FakeHostedAPI:
    return FakeHostedAPI(api_key=FAKE_KEY)


@pytest.fixture
def li(fake: FakeHostedAPI) -> LinkedInFake:
    return linkedin_of(fake)


@pytest.fixture
async def client(fake: FakeHostedAPI) -> AsyncIterator[MamClient]:
    async with MamClient(base_url="http://fake", api_key=FAKE_KEY, transport=fake.transport()) as mam:
        yield mam


async def test_password_login_without_challenge(
    client: MamClient, fake: FakeHostedAPI, li: LinkedInFake
) -> None:
    terminal = ScriptedTerminal(["me@example.com", PASSWORD])
    assert await connect_account(client, terminal, label="Founder account") == 0
    assert [secret for _, secret in terminal.prompts] == [False, True], "the password is read with getpass"
    (session,) = li.sessions.values()
    assert session["label"] == "Founder account"
    assert f"Connected LinkedIn session {session['id']} (Founder account)" in terminal.output
    assert PASSWORD not in terminal.output
    login = next(r for r in fake.requests if r.path == "/v1/linkedin/sessions")
    assert login.json == {"email": "me@example.com", "password": PASSWORD, "label": "Founder account"}
    assert not fake.violations


async def test_pin_challenge(client: MamClient, fake: FakeHostedAPI, li: LinkedInFake) -> None:
    li.challenge = "pin"
    terminal = ScriptedTerminal([PASSWORD, li.pin])
    assert await connect_account(client, terminal, email="me@example.com") == 0
    verify = next(r for r in fake.requests if r.path == "/v1/linkedin/sessions/verify")
    assert (
        verify.json is not None
        and verify.json["pin"] == li.pin
        and verify.json["challengeId"].startswith("chl_")
    )
    assert len(li.sessions) == 1


async def test_wrong_pin_is_reported(client: MamClient, li: LinkedInFake) -> None:
    li.challenge = "pin"
    terminal = ScriptedTerminal([PASSWORD, "000000"])
    assert await connect_account(client, terminal, email="me@example.com") == 1
    assert "wrong PIN" in terminal.output and not li.sessions


async def test_mobile_app_approval_is_polled_until_approved(
    client: MamClient, fake: FakeHostedAPI, li: LinkedInFake
) -> None:
    li.challenge = "mobile"
    li.polls_before_approval = 2
    terminal = ScriptedTerminal([PASSWORD])
    assert await connect_account(client, terminal, email="me@example.com", poll_interval=0.0) == 0
    assert len([r for r in fake.requests if r.path == "/v1/linkedin/sessions/poll"]) == 3
    assert "mobile app" in terminal.output and len(li.sessions) == 1


async def test_empty_pin_falls_back_to_app_approval_and_gives_up_in_bounded_time(
    client: MamClient, li: LinkedInFake
) -> None:
    li.challenge = "pin"
    li.polls_before_approval = 1000
    terminal = ScriptedTerminal([PASSWORD, ""])
    assert (
        await connect_account(client, terminal, email="me@example.com", poll_interval=0.01, max_wait=0.05)
        == 1
    )
    assert "No approval arrived in time" in terminal.output


async def test_cookie_import(client: MamClient, fake: FakeHostedAPI, li: LinkedInFake) -> None:
    terminal = ScriptedTerminal(["AQEDAR-secret-li-at", '"ajax:123456789"'])
    assert await connect_account(client, terminal, use_cookies=True, label="CEO") == 0
    assert [secret for _, secret in terminal.prompts] == [True, True]
    body = next(r for r in fake.requests if r.path == "/v1/linkedin/sessions/import").json
    assert body == {"liAt": "AQEDAR-secret-li-at", "jsessionId": "ajax:123456789", "label": "CEO"}
    assert "AQEDAR-secret-li-at" not in terminal.output and len(li.sessions) == 1


def test_the_console_keeps_a_password_exactly_as_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getpass", lambda prompt: " pass word ")
    assert ConsoleTerminal().secret("LinkedIn password: ") == " pass word "


async def test_pasted_cookies_are_trimmed(client: MamClient, fake: FakeHostedAPI) -> None:
    terminal = ScriptedTerminal([" AQEDAR-secret-li-at \n", ' "ajax:123456789" '])
    assert await connect_account(client, terminal, use_cookies=True) == 0
    body = next(r for r in fake.requests if r.path == "/v1/linkedin/sessions/import").json
    assert (body["liAt"], body["jsessionId"]) == ("AQEDAR-secret-li-at", "ajax:123456789")


async def test_wrong_password_and_session_cap(client: MamClient, li: LinkedInFake) -> None:
    refused = ScriptedTerminal(["me@example.com", "wrong"])
    assert await connect_account(client, refused) == 1
    assert "LinkedIn rejected the email or password" in refused.output and "wrong" not in refused.output
    li.session_cap = 1
    li.add_session("existing")
    capped = ScriptedTerminal(["me@example.com", PASSWORD])
    assert await connect_account(client, capped) == 1
    assert capped.output.startswith("TOO_MANY_SESSIONS:") and "revoke an unused session" in capped.output


async def test_sessions_listing(client: MamClient, li: LinkedInFake) -> None:
    terminal = ScriptedTerminal([])
    assert await list_sessions(client, terminal) == 0 and "mam-mcp linkedin connect" in terminal.output
    sid = li.add_session("Founder")
    assert await list_sessions(client, terminal) == 0 and f"{sid}  Founder  active" in terminal.output


def test_the_command_is_registered_and_refuses_local_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(["linkedin", "connect", "--label", "x", "--cookies"])
    assert args.command == "linkedin" and args.linkedin_action == "connect" and args.cookies
    assert run(args, make_settings(tmp_path, hosted=False)) == 2
    assert "needs the hosted MyAgentMail API" in capsys.readouterr().err
    assert run(argparse.Namespace(linkedin_action=None), make_settings(tmp_path)) == 2
