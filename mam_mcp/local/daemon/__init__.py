"""The daemon process: run.py composes and serves the backend (the place to see how the parts are
wired), activity.py its idle shutdown, control.py its own routes, data_dir.py its files and their modes,
memory.py its allocator setting; launcher.py finds or starts a daemon for an MCP server."""
