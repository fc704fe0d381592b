"""What the `mam_inbox` pytest fixture costs: once per session, per test, per mail, and when unused.

Usage: python bench/pytest_fixture.py [--runs 5] [--inboxes 20] [--mails 20]
- daemon_start: `MailServer.start(dir)` (what the first test asking for `mam_inbox` waits for), N runs;
- new_inbox: a fresh inbox on a running daemon (what every later test waits for);
- mail_round_trip: smtplib sends a mail to the inbox -> `wait_for_email` returns it;
- plugin_import: `import mam_mcp.testing.plugin` in a fresh interpreter beside `import pytest`
  (what every pytest run pays once mam-mcp is installed), interleaved;
- pytest_session: a whole `pytest` run of one test that uses `mam_inbox` beside one that does not.
Prints JSON (milliseconds; medians, with min and max).
"""

from __future__ import annotations

import argparse
import json
import os
import smtplib
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mam_mcp.testing import MailServer  # noqa: E402 - after the sys.path line above

USES_FIXTURE = textwrap.dedent(
    """
    def test_uses_it(mam_inbox):
        assert mam_inbox.address
    """
)
NO_FIXTURE = "def test_plain():\n    assert True\n"


def _summary(values_ms: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values_ms), 1),
        "min": round(min(values_ms), 1),
        "max": round(max(values_ms), 1),
        "n": len(values_ms),
    }


def _timed(command: list[str], cwd: Path | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, timeout=120)
    return (time.perf_counter() - started) * 1000


def _send(server: MailServer, to: str, index: int) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "bench@app.test", to, f"Code {index}"
    message.set_content(f"Your code is {100000 + index}")
    with smtplib.SMTP(server.smtp_host, server.smtp_port, timeout=10) as smtp:
        smtp.send_message(message)


def measure_daemon(root: Path, runs: int, inboxes: int, mails: int) -> dict[str, Any]:
    starts: list[float] = []
    for run in range(runs):
        started = time.perf_counter()
        server = MailServer.start(root / f"start-{run}")
        starts.append((time.perf_counter() - started) * 1000)
        if run < runs - 1:
            server.stop()
    try:
        creations: list[float] = []
        for index in range(inboxes):
            started = time.perf_counter()
            server.new_inbox(f"bench-{index}").close()
            creations.append((time.perf_counter() - started) * 1000)
        trips: list[float] = []
        with server.new_inbox("bench-trip") as inbox:
            for index in range(mails):
                started = time.perf_counter()
                _send(server, inbox.address, index)
                inbox.wait_for_email(subject=f"Code {index}")
                trips.append((time.perf_counter() - started) * 1000)
    finally:
        server.stop()
    return {
        "daemon_start_ms": _summary(starts),
        "new_inbox_ms": _summary(creations),
        "mail_round_trip_ms": _summary(trips),
    }


def measure_imports(runs: int) -> dict[str, Any]:
    plugin, bare = [], []
    for _ in range(runs):  # interleaved: machine noise hits both alike
        bare.append(_timed([sys.executable, "-c", "import pytest"]))
        plugin.append(_timed([sys.executable, "-c", "import pytest, mam_mcp.testing.plugin"]))
    # Steadier than wall time: the import time of our own modules, as `python -X importtime` reports it.
    trace = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import pytest, mam_mcp.testing.plugin"],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    ours_us = [
        int(line.split("|")[0].split(":")[1])
        for line in trace.stderr.splitlines()
        if line.startswith("import time:") and line.split("|")[-1].strip().startswith("mam_mcp")
    ]
    return {
        "plugin_own_import_ms": round(sum(ours_us) / 1000, 2),
        "plugin_modules_imported": len(ours_us),
        "import_pytest_ms": _summary(bare),
        "import_pytest_and_plugin_ms": _summary(plugin),
        "plugin_import_delta_ms_p50": round(statistics.median(plugin) - statistics.median(bare), 1),
    }


def measure_sessions(root: Path, runs: int) -> dict[str, Any]:
    project = root / "project"
    project.mkdir()
    (project / "test_uses.py").write_text(USES_FIXTURE)
    (project / "test_plain.py").write_text(NO_FIXTURE)
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(root / "bt")]
    uses, plain = [], []
    for _ in range(runs):
        plain.append(_timed([*base, "test_plain.py"], cwd=project))
        uses.append(_timed([*base, "test_uses.py"], cwd=project))
    return {
        "pytest_one_plain_test_ms": _summary(plain),
        "pytest_one_mam_inbox_test_ms": _summary(uses),
        "session_cost_of_the_fixture_ms_p50": round(statistics.median(uses) - statistics.median(plain), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--inboxes", type=int, default=20)
    parser.add_argument("--mails", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mam-bench-fixture-") as tmp:
        root = Path(tmp)
        result: dict[str, Any] = {
            "benchmark": "pytest_fixture",
            "command": "python bench/pytest_fixture.py " + " ".join(sys.argv[1:]),
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        }
        result.update(measure_daemon(root, args.runs, args.inboxes, args.mails))
        result.update(measure_imports(args.runs))
        result.update(measure_sessions(root, args.runs))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
