"""What every tool is built from, and what the server, resources and commands share with the tools.

- `toolsets`: `Toolset`, `ToolSpec` and the annotation presets a tool module declares itself with.
- `arguments`: the shared argument types, validated before a tool body runs.
- `results`: tool results (`ok`, `fail`) and the fence around untrusted mail text.
- `presentation`: how a message reads to an agent (summaries, body text).
- `send_status`: what a send's status means, said plainly.
- `runtime`: the per-server `Runtime` (settings, the API client made on first use, process state).

Nothing here knows which tools exist (that is `mam_mcp.tools.catalog`) or how a backend is reached
(the server is given a client factory, by default `mam_mcp.backends.connect_backend`).
"""
