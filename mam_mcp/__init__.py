"""mam-mcp: an MCP server that gives AI agents real email inboxes.

Nothing is imported here on purpose: `mam-mcp serve` must start fast.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
