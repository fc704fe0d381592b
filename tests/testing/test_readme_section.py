"""The README's "Testing your app's email" section stays true to `mam_mcp.testing`."""

from __future__ import annotations

import re
from pathlib import Path

from mam_mcp.testing import AsyncInbox, Email, Inbox

README = Path(__file__).resolve().parents[2] / "README.md"


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Testing your app's email")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_every_python_example_compiles() -> None:
    blocks = re.findall(r"```python\n(.*?)```", _section(), re.DOTALL)
    assert len(blocks) >= 2
    for block in blocks:
        compile(block, "README.md", "exec")


def test_every_public_method_and_email_field_is_documented() -> None:
    section = _section()
    methods = {name for name in dir(Inbox) if not name.startswith("_") and callable(getattr(Inbox, name))}
    methods -= {"close"}
    assert methods == {
        n for n in dir(AsyncInbox) if not n.startswith("_") and callable(getattr(AsyncInbox, n))
    }
    undocumented = [name for name in sorted(methods) if f"`{name}(" not in section]
    assert not undocumented
    fields = [name for name in Email.__dataclass_fields__ if name != "id"] + ["body", "code", "links", "link"]
    assert not [name for name in fields if f"`{name}`" not in section]
    for name in ("mam_inbox", "mam_mail_server", "mam_inbox.aio", "expect_no_email", "pytest-xdist"):
        assert name in section
