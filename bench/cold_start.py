"""Cold start over stdio: spawn -> initialize -> tools/list, median of N runs.

Usage: python bench/cold_start.py [--runs 15] [--mode local|hosted]
Measures `mam-mcp serve` (default toolsets; local mode starts no backend before the first tool
call, hosted mode makes no request before it) beside a bare MCP SDK server with the same number
of trivial tools, in the same run, interleaved so machine noise hits both alike. Prints JSON.
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


def time_once(command: list[str], env: dict[str, str]) -> tuple[float, int]:
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
    finally:
        proc.kill()
        proc.wait(timeout=10)
    return elapsed, len(tools)


def main(runs: int, mode: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MYAGENTMAIL", "MAM_"))}
        env.update({"HOME": tmp, "XDG_CONFIG_HOME": f"{tmp}/c", "XDG_DATA_HOME": f"{tmp}/d"})
        if mode == "hosted":
            env["MYAGENTMAIL_API_KEY"] = "tk_bench_0000000000000000"  # no request is made before a tool call
        ours_cmd = [sys.executable, "-m", "mam_mcp.cli", "serve"]
        _, count = time_once(ours_cmd, env)  # warm the file cache for both
        bare_path = Path(tmp) / "bare_server.py"
        bare_path.write_text(BARE_SERVER)
        bare_cmd = [sys.executable, str(bare_path), str(count)]
        time_once(bare_cmd, env)
        ours, bare = [], []
        for _ in range(runs):
            ours.append(time_once(ours_cmd, env)[0])
            bare.append(time_once(bare_cmd, env)[0])
    ours_median, bare_median = statistics.median(ours), statistics.median(bare)
    return {
        "mode": mode,
        "runs": runs,
        "tools": count,
        "mam_mcp_median_ms": round(ours_median * 1000, 1),
        "bare_sdk_median_ms": round(bare_median * 1000, 1),
        "ratio": round(ours_median / bare_median, 3),
        "goal_ratio": 1.3,
        "mam_mcp_ms": [round(x * 1000, 1) for x in ours],
        "bare_sdk_ms": [round(x * 1000, 1) for x in bare],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--mode", choices=["local", "hosted"], default="local")
    args = parser.parse_args()
    print(json.dumps(main(args.runs, args.mode), indent=2))
