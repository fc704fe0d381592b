"""`MailServer` on its own (what the session fixture wraps): start, restart after a stop, clear failures."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest

from mam_mcp.testing import Inbox, MailServer, MailServerError


def test_new_inbox_starts_a_fresh_daemon_when_the_old_one_stopped(tmp_path: Path) -> None:
    with MailServer.start(tmp_path / "mail") as server:
        first = server.new_inbox("before")
        server.stop()  # as the idle timeout would
        assert not server.running
        with pytest.raises(MailServerError, match="did not answer"):
            first.emails()
        second = server.new_inbox("after")
        assert server.running and second.address.startswith("after-")
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@app.test", second.address, "Back"
        message.set_content("code: 777777")
        with smtplib.SMTP(second.smtp_host, second.smtp_port, timeout=10) as smtp:
            smtp.send_message(message)
        assert second.last_code() == "777777"
        first.close()
        second.close()
    assert not server.running
    assert "listening" in server.log_path.read_text(encoding="utf-8")


def test_a_daemon_that_does_not_start_in_time_is_killed_and_the_error_names_its_log(tmp_path: Path) -> None:
    with pytest.raises(
        MailServerError, match=r"did not start within 0\.001 s; its log is .*daemon\.log"
    ) as failure:
        MailServer.start(tmp_path / "mail", start_timeout=0.001)
    assert "Traceback" not in str(failure.value)


def test_a_refused_request_says_what_failed_without_the_key(tmp_path: Path) -> None:
    with MailServer.start(tmp_path / "mail") as server:
        real = server.new_inbox()
        wrong = Inbox(
            inbox_id=real.id, address=real.address, api_url=real.api_url, api_key="tk_wrong_key_000000",
            smtp_host=real.smtp_host, smtp_port=real.smtp_port,
        )  # fmt: skip
        with (
            wrong,
            pytest.raises(
                MailServerError, match=f"reading the mail of {real.address} failed: HTTP 401"
            ) as failure,
        ):
            wrong.emails()
        assert "tk_wrong_key_000000" not in str(failure.value) and server.api_key not in str(failure.value)
        real.close()
