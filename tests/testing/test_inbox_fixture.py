"""The `mam_inbox` fixture from a user's side: a Starlette app mails through SMTP, the test reads it."""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import httpx2
import pytest

from mam_mcp.testing import Inbox, MailServer, NoEmailError, UnexpectedEmailError
from tests.testing.serve_thread import serve_in_thread
from tests.testing.signup_app import signup_app


@pytest.fixture
def app(mam_inbox: Inbox) -> Iterator[httpx2.Client]:
    """The sign-up app, pointed at the fixture's SMTP port, served on a real port."""
    with (
        serve_in_thread(signup_app(mam_inbox.smtp_host, mam_inbox.smtp_port)) as url,
        httpx2.Client(base_url=url, trust_env=False) as client,
    ):
        yield client


def mail(inbox: Inbox, subject: str, text: str, *, sender: str = "Shop <orders@shop.test>") -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, inbox.address, subject
    message.set_content(text)
    with smtplib.SMTP(inbox.smtp_host, inbox.smtp_port, timeout=10) as smtp:
        smtp.send_message(message)


def test_signup_code_in_three_lines(mam_inbox: Inbox, app: httpx2.Client) -> None:
    app.post("/signup", json={"email": mam_inbox.address})
    code = mam_inbox.last_code()
    assert app.post("/verify", json={"email": mam_inbox.address, "code": code}).status_code == 200

    assert re.fullmatch(r"\d{6}", code)
    welcome = mam_inbox.wait_for_email(subject="welcome")
    assert welcome.from_address == "no-reply@acme.test" and welcome.from_name == "Acme"
    assert welcome.to == (mam_inbox.address,)
    assert welcome.link == "https://acme.test/start"


def test_a_wrong_code_is_refused_by_the_app(mam_inbox: Inbox, app: httpx2.Client) -> None:
    app.post("/signup", json={"email": mam_inbox.address})
    code = mam_inbox.wait_for_email(subject="confirm").code
    assert code is not None
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    assert app.post("/verify", json={"email": mam_inbox.address, "code": wrong}).status_code == 400
    mam_inbox.expect_no_email(within=0.5, subject="welcome")


def test_the_address_is_named_after_the_test_and_on_the_local_domain(
    mam_inbox: Inbox, mam_mail_server: MailServer
) -> None:
    local, domain = mam_inbox.address.split("@")
    assert local.startswith("test-the-address-is-named-after-the-test")
    assert domain == mam_mail_server.domain
    assert mam_inbox.api_key not in repr(mam_inbox) and mam_inbox.api_key not in repr(mam_mail_server)


def test_wait_returns_each_mail_once_oldest_first(mam_inbox: Inbox) -> None:
    mail(mam_inbox, "Order 1 shipped", "first")
    mail(mam_inbox, "Order 2 shipped", "second")
    first = mam_inbox.wait_for_email(subject="shipped")
    second = mam_inbox.wait_for_email(subject="shipped")
    assert (first.subject, second.subject) == ("Order 1 shipped", "Order 2 shipped")
    assert first.text == first.body == "first\n"
    with pytest.raises(NoEmailError, match=r"\[already returned\]"):
        mam_inbox.wait_for_email(subject="shipped", timeout=0.3)
    assert [e.subject for e in mam_inbox.emails()] == ["Order 1 shipped", "Order 2 shipped"]


def test_filters_by_sender_subject_pattern_body_and_predicate(mam_inbox: Inbox) -> None:
    mail(mam_inbox, "Invoice 7", "amount: 12 EUR", sender="Billing <billing@shop.test>")
    mail(mam_inbox, "Newsletter", "deals inside", sender="News <news@shop.test>")
    mail(mam_inbox, "Invoice 8", "amount: 99 EUR", sender="Billing <billing@shop.test>")
    assert mam_inbox.wait_for_email(from_="news@").subject == "Newsletter"
    assert mam_inbox.wait_for_email(from_="BILLING", body="99 eur").subject == "Invoice 8"
    assert mam_inbox.wait_for_email(subject=re.compile(r"^Invoice \d$")).subject == "Invoice 7"
    mail(mam_inbox, "Invoice 9", "amount: 5 EUR", sender="Billing <billing@shop.test>")
    assert mam_inbox.wait_for_email(where=lambda e: e.subject.endswith("9")).body.strip() == "amount: 5 EUR"


def test_a_wait_that_times_out_fails_naming_what_arrived(mam_inbox: Inbox) -> None:
    with pytest.raises(NoEmailError, match="the inbox received no mail at all"):
        mam_inbox.wait_for_email(timeout=0.2)
    mail(mam_inbox, "Receipt", "thanks")
    with pytest.raises(NoEmailError) as failure:
        mam_inbox.wait_for_email(subject="password reset", timeout=0.3)
    text = str(failure.value)
    assert "no email matching subject ~ 'password reset' reached " + mam_inbox.address in text
    assert "'Receipt' from Shop <orders@shop.test>" in text
    assert isinstance(failure.value, AssertionError)


def test_expect_no_email_passes_on_silence(mam_inbox: Inbox, app: httpx2.Client) -> None:
    assert app.post("/profile", json={"email": mam_inbox.address, "name": "Ada"}).status_code == 200
    mam_inbox.expect_no_email(within=0.5)
    assert mam_inbox.emails() == []


def test_expect_no_email_fails_naming_the_offender(mam_inbox: Inbox) -> None:
    with serve_in_thread(signup_app(mam_inbox.smtp_host, mam_inbox.smtp_port, chatty_profile=True)) as url:
        httpx2.post(f"{url}/profile", json={"email": mam_inbox.address, "name": "Ada"}, trust_env=False)
    with pytest.raises(UnexpectedEmailError) as failure:
        mam_inbox.expect_no_email(within=5)
    assert failure.value.email.subject == "Your profile changed"
    assert "'Your profile changed' from Acme <no-reply@acme.test>" in str(failure.value)
    assert f"expected no email at {mam_inbox.address}" in str(failure.value)


def test_expect_no_email_ignores_mail_already_waited_for_and_other_subjects(mam_inbox: Inbox) -> None:
    mail(mam_inbox, "Your code", "code: 123456")
    assert mam_inbox.wait_for_email().code == "123456"
    mail(mam_inbox, "Receipt", "thanks")
    mam_inbox.expect_no_email(within=0.3, subject="code")
    with pytest.raises(UnexpectedEmailError, match="'Receipt'"):
        mam_inbox.expect_no_email(within=0.3)


def test_last_code_and_link_are_the_newest_ones(mam_inbox: Inbox) -> None:
    mail(mam_inbox, "Sign-in code", "Your code is 111111")
    mail(mam_inbox, "Hello", "no code here")
    assert mam_inbox.last_code() == "111111"  # the newest mail has none: the newest that has one
    mail(mam_inbox, "New sign-in code", "Your code is 222222\nOr click https://shop.test/magic?token=t0k3n")
    assert mam_inbox.last_code() == "222222"
    assert mam_inbox.last_link() == "https://shop.test/magic?token=t0k3n"
    assert mam_inbox.last_email().subject == "New sign-in code"


def test_each_inbox_sees_only_its_own_mail(mam_inbox: Inbox, mam_mail_server: MailServer) -> None:
    with mam_mail_server.new_inbox("other") as other:
        assert other.address != mam_inbox.address
        mail(other, "For the other one", "hi")
        assert other.wait_for_email().subject == "For the other one"
        mam_inbox.expect_no_email(within=0.3)


async def test_async_twins_on_aio(mam_inbox: Inbox) -> None:
    app = signup_app(mam_inbox.smtp_host, mam_inbox.smtp_port)
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://acme.test"
    ) as client:
        await client.post("/signup", json={"email": mam_inbox.address})
        code = await mam_inbox.aio.last_code()
        assert (
            await client.post("/verify", json={"email": mam_inbox.address, "code": code})
        ).status_code == 200

        welcome = await mam_inbox.aio.wait_for_email(subject="welcome")
        assert await mam_inbox.aio.last_link() == "https://acme.test/start" == welcome.link
        await mam_inbox.aio.expect_no_email(within=0.3)  # both mails were returned: the code, the welcome
        with pytest.raises(NoEmailError):
            await mam_inbox.aio.wait_for_email(subject="welcome", timeout=0.2)
    assert [e.subject for e in await mam_inbox.aio.emails()] == [
        "Confirm your Acme account",
        "Welcome to Acme",
    ]


def test_mail_last_code_returned_is_no_longer_unexpected_but_older_unread_mail_is(mam_inbox: Inbox) -> None:
    mail(mam_inbox, "Hello", "no code here")
    mail(mam_inbox, "Sign-in code", "Your code is 333333")
    assert mam_inbox.last_code() == "333333"
    mam_inbox.expect_no_email(within=0.3, subject="code")
    with pytest.raises(UnexpectedEmailError, match="'Hello' from Shop <orders@shop.test>"):
        mam_inbox.expect_no_email(within=0.3)
    assert mam_inbox.wait_for_email().subject == "Hello"  # the oldest not returned yet
    mam_inbox.expect_no_email(within=0.3)


async def test_a_blocking_wait_in_an_async_test_says_to_await_the_aio_twin(mam_inbox: Inbox) -> None:
    with pytest.raises(NoEmailError, match=r"await mam_inbox\.aio\.<method>\(\.\.\.\) instead"):
        mam_inbox.wait_for_email(timeout=0.1)
    with pytest.raises(NoEmailError) as failure:
        await mam_inbox.aio.wait_for_email(timeout=0.1)
    assert "instead" not in str(failure.value)
