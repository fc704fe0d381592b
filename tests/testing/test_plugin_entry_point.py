"""The plugin as a user gets it: loaded through the `pytest11` entry point, costing nothing until used."""

from __future__ import annotations

import subprocess
import sys

import pytest

USER_TEST = """
import smtplib
from email.message import EmailMessage


def test_my_app_mails_a_code(mam_inbox):
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "app@example.test", mam_inbox.address, "Your code"
    message.set_content("Your login code is 424242")
    with smtplib.SMTP(mam_inbox.smtp_host, mam_inbox.smtp_port, timeout=10) as smtp:
        smtp.send_message(message)
    assert mam_inbox.last_code() == "424242"
    mam_inbox.expect_no_email(within=0.2, subject="password")
"""

UNUSED_TEST = """
import sys


def test_the_plugin_is_loaded_but_nothing_behind_it():
    loaded = sorted(name for name in sys.modules if name.startswith("mam_mcp"))
    assert loaded == ["mam_mcp", "mam_mcp.testing", "mam_mcp.testing.plugin"], loaded
"""


def test_a_user_test_gets_the_fixture_through_the_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TEST)  # no conftest, no -p: only the installed entry point
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_without_the_entry_point_the_fixture_is_unknown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:mam_mcp")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'mam_inbox' not found*"])


def test_a_session_that_never_asks_for_the_fixture_starts_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_unused=UNUSED_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not list(pytester.path.rglob("daemon.log"))


def test_importing_the_plugin_imports_only_pytest() -> None:
    probe = (
        "import sys; before = set(sys.modules); import mam_mcp.testing.plugin; "
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in "
        "('mam_mcp', 'httpx2', 'pydantic', 'anyio', 'uvicorn', 'starlette', 'aiosmtpd')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "['mam_mcp', 'mam_mcp.testing', 'mam_mcp.testing.plugin']"
