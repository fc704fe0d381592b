"""`MailServer` on its own (what the session fixture wraps): start, restart after a stop, clear failures."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
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


KILLED_RUN_TEST = """
import json, os, time
from pathlib import Path


def test_a_test_that_hangs(mam_inbox, mam_mail_server):
    state = json.loads(mam_mail_server.config.state_path.read_text())
    info = {"pid": state["pid"], "smtp": mam_mail_server.smtp_port, "log": str(mam_mail_server.log_path)}
    Path(os.environ["MAM_TEST_INFO"]).write_text(json.dumps(info))
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that never comes counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_test_run_leaves_no_daemon_behind(pytester: pytest.Pytester, how: signal.Signals) -> None:
    """CI kills a run that hangs (a job timeout, the OOM killer): the fixture's daemon must go with
    it, not keep its ports and memory (it used to live on for 15 minutes)."""
    pytester.makepyfile(test_hang=KILLED_RUN_TEST)
    info = pytester.path / "info.json"
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_hang.py"],
        cwd=pytester.path, env={**os.environ, "MAM_TEST_INFO": str(info)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.05)
        started = json.loads(info.read_text())
        assert _alive(started["pid"])
        run.send_signal(how)
        run.wait(30)
        deadline = time.monotonic() + 15
        while _alive(started["pid"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(started["pid"]), "the daemon outlived the test run that started it"
        with socket.socket() as probe:  # and its SMTP port is free again
            probe.bind(("127.0.0.1", started["smtp"]))
        log = Path(started["log"]).read_text(encoding="utf-8")
        assert "the process that started this daemon is gone" in log  # a clean stop, not a kill
        assert log.rstrip().endswith("stopped")
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(30)


def test_a_daemon_that_crashed_comes_back_on_the_same_ports(tmp_path: Path) -> None:
    """An app under test is configured once with the SMTP port: a restart keeps it when it is free."""
    with MailServer.start(tmp_path / "mail") as server:
        smtp_port, api_url = server.smtp_port, server.api_url
        pid = json.loads(server.config.state_path.read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while server.running and time.monotonic() < deadline:
            time.sleep(0.05)
        inbox = server.new_inbox("after-crash")
        assert server.running and (server.smtp_port, server.api_url) == (smtp_port, api_url)
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@app.test", inbox.address, "Again"
        message.set_content("code: 515151")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            smtp.send_message(message)
        assert inbox.last_code() == "515151"
        inbox.close()


def test_a_daemon_that_exits_while_starting_is_named_with_its_code_and_only_its_own_log(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    root.mkdir()
    (root / "daemon.log").write_text("an earlier daemon: listening on 127.0.0.1\n")
    (root / "data").write_text("not a directory")  # the daemon cannot make its data dir: it exits at once
    started = time.monotonic()
    with pytest.raises(MailServerError, match=r"exited with code \d+ while starting; its log is") as failure:
        MailServer.start(root)
    assert time.monotonic() - started < 25  # said when it happened, not after the start timeout
    assert "an earlier daemon" not in str(failure.value)
    assert "cannot use the data dir" in str(failure.value)  # the daemon's own sentence, from its log
    assert "Traceback" not in str(failure.value) and "Fatal Python error" not in str(failure.value)


def test_after_a_crash_with_its_port_taken_it_comes_back_on_other_ports(tmp_path: Path) -> None:
    with MailServer.start(tmp_path / "mail") as server:
        old_smtp = server.smtp_port
        pid = json.loads(server.config.state_path.read_text())["pid"]
        assert os.getpgid(pid) != os.getpgid(0)  # its own process group: a Ctrl-C to the run's is not for it
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while server.running and time.monotonic() < deadline:
            time.sleep(0.05)
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", old_smtp))
            squatter.listen()
            inbox = server.new_inbox("moved")  # the old ports first: taken, so any free ones
            assert server.running and server.smtp_port != old_smtp
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@app.test", inbox.address, "Moved"
        message.set_content("code: 626262")
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
            smtp.send_message(message)
        assert inbox.last_code() == "626262"
        inbox.close()
