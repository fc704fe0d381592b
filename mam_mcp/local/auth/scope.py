"""What an API key of the local backend may touch: its kind and the owners it is bound to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["KeyKind", "KeyScope"]

KeyKind = Literal["tk", "wk", "ak"]


@dataclass(frozen=True, slots=True)
class KeyScope:
    """What an authenticated key may touch. `ak` (and legacy `mam_`) keys are one inbox."""

    kind: KeyKind
    key_id: str
    tenant_id: str
    workspace_id: str | None = None  # set for wk_ keys (and ak_ keys whose inbox is in a workspace)
    inbox_id: str | None = None  # set for ak_ keys only

    def can_see(self, *, tenant_id: str, workspace_id: str | None, inbox_id: str | None) -> bool:
        """True when a resource with these owners is inside this key's scope."""
        if tenant_id != self.tenant_id:
            return False
        if self.kind == "wk":
            return workspace_id == self.workspace_id
        if self.kind == "ak":
            return inbox_id is not None and inbox_id == self.inbox_id
        return True
