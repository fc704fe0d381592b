"""`MailServer`: one local backend daemon for a test session, in a directory of its own, on free ports.

The daemon runs in a child process (`python -m mam_mcp.local --ready-line`), so the app and the
event loops of the tests never share a loop or a GIL-bound thread with it; its config goes in on
stdin and its ports come back as one line on stdout (no polling). It listens on 127.0.0.1 only,
logs to `<root>/daemon.log`, and stops on `stop()`, or as soon as the process that started it is
gone: it keeps that process's end of a pipe (`--stop-with-parent`), which the kernel closes when
the process ends however it ends (a test run killed by SIGTERM, SIGKILL, a CI timeout), so nothing
is left running. It never stops on its own while that process lives, so its ports stay the same
for the whole session. With pytest-xdist every worker is its own process, so each starts its own
daemon in its own directory.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any, Self

import httpx2

import mam_mcp
from mam_mcp.local.config import LocalConfig
from mam_mcp.testing.inbox import Inbox, MailServerError, api_error

__all__ = ["IDLE_TIMEOUT_SECONDS", "MailServer"]

IDLE_TIMEOUT_SECONDS = 0.0  # never: the daemon lives exactly as long as the process that started it
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
_LOG_TAIL_LINES = 8


def _read_line(stream: IO[bytes], timeout: float) -> bytes | None:
    """The first line of `stream`; b"" if it ended first, None if nothing came within `timeout` s
    (portable: no select on a pipe)."""
    got: list[bytes] = []
    reader = threading.Thread(
        target=lambda: got.append(stream.readline()), name="mam-ready-line", daemon=True
    )
    reader.start()
    reader.join(timeout)
    return got[0] if got else None


def _username(name: str | None) -> str:
    """A valid, unique local part from a test's name: `test_signup[sqlite]` -> `test_signup-sqlite-3f9a1c`."""
    base = re.sub(r"[^a-z0-9]+", "-", (name or "").lower()).strip("-")[:40].strip("-")
    return f"{base or 'test'}-{secrets.token_hex(3)}"


class MailServer:
    """A running local mail backend. `new_inbox()` makes an inbox on it; `stop()` ends it.

    `smtp_host`:`smtp_port` is where an app under test sends mail (plain SMTP, no login);
    `api_url` + `api_key` reach its REST API; the key never shows in repr.
    """

    def __init__(self, root: Path, *, start_timeout: float = START_TIMEOUT_SECONDS) -> None:
        self.root = Path(root)
        self.config = LocalConfig(
            data_dir=self.root / "data",  # the daemon creates it itself, mode 0700
            http_port=0,
            smtp_port=0,
            idle_timeout_seconds=IDLE_TIMEOUT_SECONDS,
        )
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._state: dict[str, Any] = {}
        self._api_key = ""
        self._http: httpx2.Client | None = None

    @classmethod
    def start(cls, root: Path, *, start_timeout: float = START_TIMEOUT_SECONDS) -> MailServer:
        """Start a daemon in `root` (a directory of its own) and return once it accepts mail."""
        server = cls(root, start_timeout=start_timeout)
        server._launch()
        return server

    @property
    def log_path(self) -> Path:
        return self.root / "daemon.log"

    @property
    def smtp_host(self) -> str:
        return self.config.host

    @property
    def smtp_port(self) -> int:
        return int(self._state["smtpPort"])

    @property
    def api_url(self) -> str:
        return f"http://{self.config.host}:{self._state['httpPort']}"

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def domain(self) -> str:
        """The domain of every inbox address (`<name>@<domain>`)."""
        return self.config.domain

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __repr__(self) -> str:
        where = f"smtp={self.smtp_host}:{self.smtp_port} api={self.api_url}" if self._state else "not started"
        return f"MailServer({where})"

    def _log_tail(self, start: int = 0) -> str:
        """The last lines this start wrote to the log (from byte `start`: not an earlier daemon's)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(start)
                lines = log.read().decode("utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-_LOG_TAIL_LINES:])

    def _launch(self) -> None:
        """Start the daemon; after a crash, on the ports it had if they are still free."""
        previous = self._state
        if previous:
            ports = {"http_port": int(previous["httpPort"]), "smtp_port": int(previous["smtpPort"])}
            try:
                self._start_process(self.config.model_copy(update=ports))
                return
            except MailServerError as failure:
                if "in use" not in str(failure):
                    raise  # not a port taken meanwhile: starting again would fail the same way
        self._start_process(self.config)

    def _start_process(self, config: LocalConfig) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # The daemon runs the very mam_mcp the tests import (a checkout, a venv): same code, same version.
        package_root = str(Path(mam_mcp.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        with open(self.log_path, "ab") as log:
            log_start = log.tell()
            process = subprocess.Popen(
                [sys.executable, "-m", "mam_mcp.local", "--config-stdin", "--ready-line", "--stop-with-parent"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                # Its own session: a Ctrl-C to the test run's process group does not stop it while
                # the session's teardown may still use it (the pipe above stops it after pytest).
                start_new_session=os.name == "posix",
                creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
            )
        self._process = process
        assert process.stdin is not None and process.stdout is not None
        try:  # one line; the pipe stays open: the daemon stops when it closes (this process is gone)
            process.stdin.write(config.model_dump_json().encode("utf-8") + b"\n")
            process.stdin.flush()
        except OSError:
            pass  # it died at once: no ready line comes, and the log says why
        line = _read_line(process.stdout, self.start_timeout)
        if not line:
            code = None
            if line is not None:  # its stdout ended: it exited (or is exiting) before it was ready
                try:
                    code = process.wait(STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    pass
            self._kill()
            why = (
                f"exited with code {code} while starting"
                if code is not None
                else f"did not start within {self.start_timeout:g} s"
            )
            raise MailServerError(
                f"the local mail backend {why}; its log is {self.log_path}:\n{self._log_tail(log_start)}"
            )
        self._state = json.loads(line)
        self._api_key = self.config.key_path.read_text(encoding="utf-8").strip()
        if self._http is not None:
            self._http.close()
        self._http = httpx2.Client(
            base_url=self.api_url, headers={"X-API-Key": self._api_key}, timeout=10.0, trust_env=False
        )

    def new_inbox(self, name: str | None = None) -> Inbox:
        """A fresh inbox; `name` (e.g. the test's name) becomes the start of its address."""
        if self._process is None:
            raise MailServerError("the mail server is not started: use MailServer.start(root)")
        if not self.running:
            self._close_handles()
            self._launch()  # it stopped (crashed, or was stopped): start it again, on its ports if free
        assert self._http is not None
        try:
            response = self._http.post("/v1/inboxes", json={"username": _username(name)})
        except httpx2.TransportError as exc:
            raise MailServerError(
                f"the local mail backend at {self.api_url} did not answer ({type(exc).__name__}); "
                f"its log is {self.log_path}"
            ) from None
        if response.status_code != 201:
            raise api_error("creating a test inbox", response)
        data = response.json()
        return Inbox(
            inbox_id=data["id"],
            address=data["email"],
            api_url=self.api_url,
            api_key=self._api_key,
            smtp_host=self.smtp_host,
            smtp_port=self.smtp_port,
        )

    def stop(self) -> None:
        """Stop the daemon (politely, then by force) and wait for it to exit."""
        process = self._process
        if process is None:
            return
        if process.poll() is None and self._http is not None:
            try:
                self._http.post("/_mam/shutdown")
            except httpx2.HTTPError:
                pass  # killed below
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._kill()
        self._close_handles()

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(STOP_TIMEOUT_SECONDS)
        self._close_handles()

    def _close_handles(self) -> None:
        if self._process is not None:
            for pipe in (self._process.stdout, self._process.stdin):
                if pipe is not None and not pipe.closed:
                    try:
                        pipe.close()
                    except OSError:
                        pass  # the daemon is gone: nothing to flush to

        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
