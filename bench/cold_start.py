"""Cold start over stdio: spawn -> initialize -> tools/list, median of N runs.

Usage: python bench/cold_start.py [--runs 15] [--mode local|hosted]
Measures `mam-mcp serve` (default toolsets; local mode starts no backend before the first tool
call, hosted mode makes no request before it) beside a bare MCP SDK server with the same number
of trivial tools, in the same run, interleaved so machine noise hits both alike. Beside the wall
time: each server's CPU time until tools/list is answered (Linux /proc; steadier on a busy
machine), and one `python -X importtime` start of mam-mcp: the import time of our own modules.
Prints JSON. Goal: ratio <= 1.10.

The checkout's modules are byte-compiled first, as `pip install` does: without it, with
PYTHONDONTWRITEBYTECODE set (as on the machines here) every module edited since its last
compilation is compiled again at every start, which no installed copy pays.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

BARE_SERVER = textwrap.dedent(
    """
    import sys
    from mcp.server import MCPServer

    server = MCPServer("bare")
    for index in range(int(sys.argv[1])):
        def trivial(a: str, b: str, c: int, d: bool) -> str:
            return a
        server.add_tool(trivial, name=f"tool_{index}", description="Do a thing.")
    server.run("stdio")
    """
)

INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
LIST_TOOLS = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}


def _read_response(proc: subprocess.Popen[bytes], want_id: int, deadline: float) -> dict:
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("server exited: " + (proc.stderr.read().decode()[-2000:] if proc.stderr else ""))
        message = json.loads(line)
        if message.get("id") == want_id:
            return message
    raise TimeoutError("no response in time")


GOAL_RATIO = 1.10


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_once(command: list[str], env: dict[str, str]) -> tuple[float, int, float | None, str]:
    """(wall seconds to tools/list, tool count, the server's CPU seconds by then, its stderr)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdin is not None
        deadline = time.monotonic() + 30
        proc.stdin.write((json.dumps(INITIALIZE) + "\n").encode())
        proc.stdin.flush()
        _read_response(proc, 1, deadline)
        proc.stdin.write((json.dumps(INITIALIZED) + "\n" + json.dumps(LIST_TOOLS) + "\n").encode())
        proc.stdin.flush()
        tools = _read_response(proc, 2, deadline)["result"]["tools"]
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds(proc.pid)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # a clean exit, so the stderr (importtime) is complete
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    return elapsed, len(tools), cpu, stderr


def own_import_ms(importtime_stderr: str) -> dict[str, Any]:
    """Self import time of mam_mcp's own modules, from `python -X importtime` output."""
    own: dict[str, float] = {}
    for line in importtime_stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        name = parts[-1].strip()
        if name == "mam_mcp" or name.startswith("mam_mcp."):
            try:
                own[name] = own.get(name, 0.0) + int(parts[0].split(":")[1]) / 1000
            except ValueError:
                continue
    top = sorted(own.items(), key=lambda item: -item[1])[:8]
    return {"total_ms": round(sum(own.values()), 1), "modules": len(own), "top": {k: round(v, 1) for k, v in top}}


def main(runs: int, mode: str) -> dict[str, Any]:
    import compileall

    compileall.compile_dir(Path(__file__).resolve().parent.parent / "mam_mcp", quiet=1)  # as an install has it
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MYAGENTMAIL", "MAM_"))}
        env.update({"HOME": tmp, "XDG_CONFIG_HOME": f"{tmp}/c", "XDG_DATA_HOME": f"{tmp}/d"})
        if mode == "hosted":
            env["MYAGENTMAIL_API_KEY"] = "tk_bench_0000000000000000"  # no request is made before a tool call
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)  # this checkout's mam_mcp
        ours_cmd = [sys.executable, "-m", "mam_mcp.cli", "serve"]
        count = time_once(ours_cmd, env)[1]  # warm the file cache for both
        bare_path = Path(tmp) / "bare_server.py"
        bare_path.write_text(BARE_SERVER)
        bare_cmd = [sys.executable, str(bare_path), str(count)]
        time_once(bare_cmd, env)
        ours, bare, ours_cpu, bare_cpu = [], [], [], []
        for _ in range(runs):
            wall, _, cpu, _ = time_once(ours_cmd, env)
            ours.append(wall)
            ours_cpu.append(cpu)
            wall, _, cpu, _ = time_once(bare_cmd, env)
            bare.append(wall)
            bare_cpu.append(cpu)
        importtime = own_import_ms(time_once([sys.executable, "-X", "importtime", *ours_cmd[1:]], env)[3])
    ours_median, bare_median = statistics.median(ours), statistics.median(bare)
    cpu = None
    if all(c is not None for c in ours_cpu + bare_cpu):
        ours_c, bare_c = statistics.median(ours_cpu), statistics.median(bare_cpu)  # type: ignore[type-var]
        cpu = {"mam_mcp_median_ms": round(ours_c * 1000), "bare_sdk_median_ms": round(bare_c * 1000),
               "ratio": round(ours_c / bare_c, 3) if bare_c else None}  # fmt: skip
    ratio = ours_median / bare_median
    return {
        "mode": mode,
        "runs": runs,
        "tools": count,
        "mam_mcp_median_ms": round(ours_median * 1000, 1),
        "bare_sdk_median_ms": round(bare_median * 1000, 1),
        "ratio": round(ratio, 3),
        "goal_ratio": GOAL_RATIO,
        "met": ratio <= GOAL_RATIO,
        "server_cpu": cpu,
        "own_modules_import": importtime,
        "mam_mcp_ms": [round(x * 1000, 1) for x in ours],
        "bare_sdk_ms": [round(x * 1000, 1) for x in bare],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--mode", choices=["local", "hosted"], default="local")
    args = parser.parse_args()
    print(json.dumps(main(args.runs, args.mode), indent=2))
