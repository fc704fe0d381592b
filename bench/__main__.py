"""`python -m bench`: run every benchmark, write bench/results.json, regenerate bench/README.md's tables.

Each benchmark runs as its own process (`python bench/<script>.py ...`, the command recorded with
its result), one after the other, with the load average before and after it. The 100k-message
store is filled once (by list_search) and read again by e2e_calls. About 10 minutes on a 2-core
machine; MailDev is installed with npm on the first run.

    python -m bench                                  # everything
    python -m bench --only e2e_calls,cold_start_local
    python -m bench --data-root /tmp/mam-bench-data  # keep the filled stores for the next run
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from report import goals, render_readme  # noqa: E402


def plan(data_root: Path) -> dict[str, list[str]]:
    """name -> arguments after `python`; sized so the whole run takes about ten minutes."""
    store_100k = data_root / "size-100000" / "local"
    return {
        "tools_list_size": ["bench/tools_list_size.py"],
        "tools_list_size_all": ["bench/tools_list_size.py", "--toolsets", "all"],
        "cold_start_local": ["bench/cold_start.py", "--runs", "15"],
        "cold_start_hosted": ["bench/cold_start.py", "--runs", "15", "--mode", "hosted"],
        "smtp_ingest": ["bench/smtp_ingest.py", "--rounds", "3"],
        "large_mail": ["bench/large_mail.py"],
        "list_search": ["bench/list_search.py", "--data-dir", str(store_100k), "--keep"],
        "disk_size": ["bench/disk_size.py"],
        "console_pages": ["bench/console_pages.py", "--data-dir", str(store_100k), "--keep", "--iterations", "100"],
        "wait_latency": ["bench/wait_latency.py", "--count", "100", "--poll-count", "30"],
        "e2e_calls": ["bench/e2e_calls.py", "--data-root", str(data_root), "--keep"],
        "http_load": ["bench/http_load.py"],
        "pytest_fixture": ["bench/pytest_fixture.py", "--runs", "5"],
    }


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=30)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                               text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return head.stdout.strip() + (" (uncommitted changes)" if dirty.stdout.strip() else "")


def run_one(name: str, arguments: list[str], logs: Path) -> dict[str, Any]:
    """Run one benchmark; its JSON result, or the error and the tail of its stderr."""
    command = [sys.executable, *arguments]
    shown = "python " + " ".join(shlex.quote(a) for a in arguments)
    print(f"[bench] {name}: {shown}", file=sys.stderr, flush=True)
    log = logs / f"{name}.log"
    load_before, started = os.getloadavg(), time.perf_counter()
    with open(log, "wb") as stderr:
        done = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, timeout=1800)
    entry: dict[str, Any] = {
        "command": shown,
        "seconds": round(time.perf_counter() - started, 1),
        "load_average": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
    }
    try:
        if done.returncode != 0:
            raise ValueError(f"exit code {done.returncode}")
        entry["result"] = json.loads(done.stdout)
    except ValueError as error:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        entry["error"] = f"{error}: " + " | ".join(tail)
        print(f"[bench] {name} failed: {entry['error'][:500]}", file=sys.stderr, flush=True)
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated benchmark names (default: all)")
    parser.add_argument("--data-root", type=Path, help="where the filled stores live (kept); default: a temp dir")
    parser.add_argument("--no-readme", action="store_true", help="write results.json only")
    args = parser.parse_args()
    data_root = args.data_root or Path(tempfile.mkdtemp(prefix="mam-bench-data-"))
    benchmarks = plan(data_root)
    chosen = [n.strip() for n in args.only.split(",")] if args.only else list(benchmarks)
    unknown = sorted(set(chosen) - set(benchmarks))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(benchmarks)}")
    started, load_before = time.perf_counter(), os.getloadavg()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    results: dict[str, Any] = {"benchmarks": {}}
    previous = BENCH / "results.json"
    if args.only and previous.exists():  # a partial run updates its benchmarks and keeps the others' results
        with contextlib.suppress(ValueError, KeyError, TypeError):
            kept = json.loads(previous.read_text())["benchmarks"]
            results["benchmarks"] = {name: entry for name, entry in kept.items() if name in benchmarks}
    try:
        with tempfile.TemporaryDirectory(prefix="mam-bench-logs-") as logs:
            for name in chosen:
                results["benchmarks"][name] = run_one(name, benchmarks[name], Path(logs)) | {"date": date}
    finally:
        if args.data_root is None:
            shutil.rmtree(data_root, ignore_errors=True)
    results["run"] = {
        "command": "python -m bench" + (f" --only {args.only}" if args.only else ""),
        "date": date,
        "commit": commit(),
        "seconds": round(time.perf_counter() - started, 1),
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    results["goals"] = goals(results)
    results = {"run": results.pop("run"), "goals": results.pop("goals"), **results}
    (BENCH / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    if not args.no_readme:
        readme = BENCH / "README.md"
        before = json.loads((BENCH / "e2e_before.json").read_text())
        readme.write_text(render_readme(readme.read_text(), results, before))
    met = sum(1 for g in results["goals"] if g["met"])
    print(f"[bench] {met} of {len(results['goals'])} goals met; bench/results.json written", file=sys.stderr)
    return 0 if all("error" not in e for e in results["benchmarks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
