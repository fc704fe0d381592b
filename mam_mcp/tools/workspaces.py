"""The workspaces toolset: isolated workspaces (one per customer) and their wk_ keys."""

from typing import TYPE_CHECKING, Annotated, Any

from mcp_types import CallToolResult
from pydantic import Field

from mam_mcp.toolkit.arguments import ResourceId
from mam_mcp.toolkit.results import ok
from mam_mcp.toolkit.runtime import Runtime
from mam_mcp.toolkit.toolsets import DELETE, READ, WRITE, Toolset

if TYPE_CHECKING:
    from mam_mcp.client.models import Workspace, WorkspaceKey

toolset = Toolset("workspaces", "Workspaces for multi-tenant isolation, and their keys.")

WorkspaceId = ResourceId


def _workspace_data(workspace: "Workspace") -> dict[str, Any]:
    return {"id": workspace.id, "name": workspace.name, "created_at": workspace.created_at}


def _key_data(key: "WorkspaceKey") -> dict[str, Any]:
    return {"id": key.id, "name": key.name, "prefix": key.prefix, "created_at": key.created_at, "revoked_at": key.revoked_at}


@toolset.tool(title="Create workspace", annotations=WRITE)
async def create_workspace(rt: Runtime, name: Annotated[str, Field(min_length=1, max_length=200)]) -> CallToolResult:
    """Create a workspace: inboxes and domains in it are isolated from other workspaces."""
    workspace = await (await rt.client()).workspaces.create(name=name)
    return ok(f"Created workspace {workspace.id} ({workspace.name}).", _workspace_data(workspace))


@toolset.tool(title="List workspaces", annotations=READ)
async def list_workspaces(rt: Runtime) -> CallToolResult:
    """List workspaces."""
    workspaces = await (await rt.client()).workspaces.list()
    items = [_workspace_data(w) for w in workspaces]
    return ok(f"{len(items)} workspace(s)" + "".join(f"\n- {w['id']} {w['name']}" for w in items), {"workspaces": items})


@toolset.tool(title="Get workspace", annotations=READ)
async def get_workspace(rt: Runtime, workspace_id: WorkspaceId) -> CallToolResult:
    """Show one workspace."""
    workspace = await (await rt.client()).workspaces.get(workspace_id)
    return ok(f"Workspace {workspace.id} ({workspace.name}).", _workspace_data(workspace))


@toolset.tool(title="Delete workspace", annotations=DELETE)
async def delete_workspace(rt: Runtime, workspace_id: WorkspaceId) -> CallToolResult:
    """Delete a workspace and everything in it (inboxes, mail, domains, keys)."""
    await (await rt.client()).workspaces.delete(workspace_id)
    return ok(f"Deleted workspace {workspace_id} and everything in it.", {"id": workspace_id, "deleted": True})


@toolset.tool(title="Create workspace key", annotations=WRITE)
async def create_workspace_key(
    rt: Runtime, workspace_id: WorkspaceId, name: Annotated[str | None, Field(max_length=100)] = None
) -> CallToolResult:
    """Issue a wk_ key limited to one workspace. The key is written to a 0600 file, never shown."""
    key = await (await rt.client()).workspaces.create_key(workspace_id, name=name)
    data = _key_data(key)
    if key.key:
        path = rt.save_secret(f"workspace-key-{workspace_id}", key.key)
        data["key_file"] = str(path)
        return ok(f"Created wk_ key {key.id} for workspace {workspace_id}, saved to {path} (mode 0600); it is not shown here.", data)
    return ok(f"Created key {key.id}; the API returned no key value.", data)


@toolset.tool(title="List workspace keys", annotations=READ)
async def list_workspace_keys(rt: Runtime, workspace_id: WorkspaceId) -> CallToolResult:
    """List a workspace's keys (prefixes only)."""
    keys = await (await rt.client()).workspaces.list_keys(workspace_id)
    items = [_key_data(k) for k in keys]
    return ok(f"{len(items)} key(s)" + "".join(f"\n- {k['id']} {k['prefix'] or ''} {k['name'] or ''}" for k in items), {"keys": items})


@toolset.tool(title="Revoke workspace key", annotations=DELETE)
async def revoke_workspace_key(
    rt: Runtime, workspace_id: WorkspaceId, key_id: ResourceId
) -> CallToolResult:
    """Revoke a workspace key; clients using it stop working at once."""
    await (await rt.client()).workspaces.revoke_key(workspace_id, key_id)
    return ok(f"Revoked key {key_id}.", {"id": key_id, "revoked": True})
