"""Size of tools/list as sent on the wire: characters and o200k tokens of the compact JSON.

Usage: python bench/tools_list_size.py [--toolsets email,drafts,linkedin | all]
Prints JSON. Compared with a bare SDK server offering the same number of trivial
four-argument tools, measured in the same run. Needs the [bench] extra (bpe-openai).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import anyio
from bpe_openai import get_encoding
from mcp import Client
from mcp.server import MCPServer

from mam_mcp.config import Settings
from mam_mcp.server import build_server


def _wire(tools: list[Any]) -> str:
    payload = {"tools": [t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in tools]}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def _bare_server(count: int) -> MCPServer:
    server = MCPServer("bare")
    for index in range(count):

        def trivial(a: str, b: str, c: int, d: bool) -> str:
            return a

        server.add_tool(trivial, name=f"tool_{index}", description="Do a thing.")
    return server


async def _measure(server: Any) -> str:
    async with Client(server) as client:
        return _wire((await client.list_tools()).tools)


async def main(toolsets: str | None) -> dict[str, Any]:
    enc = get_encoding("o200k_base")
    with tempfile.TemporaryDirectory() as tmp:
        env = {"HOME": tmp, "MYAGENTMAIL_API_KEY": "tk_bench_0000000000000000"}  # hosted: LinkedIn counts too
        settings = Settings.load(env=env, overrides={"toolsets": toolsets}, platform="linux")
        ours = await _measure(build_server(settings))
        count = len(json.loads(ours)["tools"])
        bare = await _measure(_bare_server(count))
    return {
        "toolsets": toolsets or "default",
        "tools": count,
        "chars": len(ours),
        "o200k_tokens": len(enc.encode(ours)),
        "tokens_per_tool": round(len(enc.encode(ours)) / max(count, 1), 1),
        "bare_sdk_same_count_tokens": len(enc.encode(bare)),
        "goal_tokens": 3400,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--toolsets", default=None)
    args = parser.parse_args()
    print(json.dumps(anyio.run(main, args.toolsets), indent=2))
