"""The browser side: the console's page, stylesheet and scripts, and the draft review view that the
console and the MCP App share. Plain files of our own (no build step, nothing from a CDN); Python
only reads them.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

__all__ = ["ASSETS", "asset"]

# name -> content type: the files a browser may fetch from the console.
ASSETS: dict[str, str] = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "draft_review.css": "text/css; charset=utf-8",
    "draft_review.js": "text/javascript; charset=utf-8",
    "sign_in.js": "text/javascript; charset=utf-8",
}


@cache
def asset(name: str) -> bytes:
    """The bytes of a file in this folder (the served ones, and templates such as console.html)."""
    return files(__name__).joinpath(name).read_bytes()
