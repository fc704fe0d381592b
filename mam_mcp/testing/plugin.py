"""The pytest plugin (entry point `pytest11: mam_mcp`): the `mam_mail_server` and `mam_inbox` fixtures.

Loaded into every pytest run of an environment where mam-mcp is installed, so it imports nothing
but pytest: the daemon starts, and the rest of mam_mcp is imported, only when a test first asks
for a fixture. The names carry a `mam_` prefix so they cannot clash with a project's own `inbox`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from mam_mcp.testing.inbox import Inbox
    from mam_mcp.testing.server import MailServer

__all__ = ["mam_inbox", "mam_mail_server"]


@pytest.fixture(scope="session")
def mam_mail_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailServer]:
    """One local mail backend for the test session (per xdist worker), in a temp dir, on free ports."""
    from mam_mcp.testing.server import MailServer

    server = MailServer.start(tmp_path_factory.mktemp("mam-mail"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mam_inbox(mam_mail_server: MailServer, request: pytest.FixtureRequest) -> Iterator[Inbox]:
    """A fresh inbox for this test, named after it: send to `.address` through `.smtp_host`:`.smtp_port`."""
    inbox = mam_mail_server.new_inbox(request.node.name)
    try:
        yield inbox
    finally:
        inbox.close()
