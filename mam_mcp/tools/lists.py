"""The lists toolset: named address groups inside an inbox (e.g. "active leads")."""

from typing import TYPE_CHECKING, Annotated, Any

from mcp_types import CallToolResult
from pydantic import Field

from mam_mcp.toolkit.arguments import EmailAddress, InboxId, ResourceId
from mam_mcp.toolkit.results import ok
from mam_mcp.toolkit.runtime import Runtime
from mam_mcp.toolkit.toolsets import DELETE, READ, WRITE, Toolset

if TYPE_CHECKING:
    from mam_mcp.client.models import AddressList

toolset = Toolset("lists", "Named address lists inside an inbox.")

ListId = ResourceId


def _list_data(item: "AddressList") -> dict[str, Any]:
    data: dict[str, Any] = {"id": item.id, "name": item.name, "description": item.description}
    if item.entries is not None:
        data["entries"] = [
            {"id": e.id, "email": e.email, "display_name": e.display_name, "metadata": e.metadata} for e in item.entries
        ]
    return data


@toolset.tool(title="List address lists", annotations=READ)
async def list_address_lists(rt: Runtime, inbox_id: InboxId) -> CallToolResult:
    """List the address lists of an inbox."""
    lists = await (await rt.client()).lists.list(inbox_id)
    items = [_list_data(item) for item in lists]
    return ok(f"{len(items)} list(s)" + "".join(f"\n- {i['id']} {i['name']}" for i in items), {"lists": items})


@toolset.tool(title="Create address list", annotations=WRITE)
async def create_address_list(
    rt: Runtime,
    inbox_id: InboxId,
    name: Annotated[str, Field(min_length=1, max_length=200)],
    description: Annotated[str | None, Field(max_length=2000)] = None,
) -> CallToolResult:
    """Create a named address list in an inbox."""
    created = await (await rt.client()).lists.create(inbox_id, name=name, description=description)
    return ok(f"Created list {created.id} ({created.name}).", _list_data(created))


@toolset.tool(title="Get address list", annotations=READ)
async def get_address_list(rt: Runtime, inbox_id: InboxId, list_id: ListId) -> CallToolResult:
    """Get a list with all its entries."""
    item = await (await rt.client()).lists.get(inbox_id, list_id)
    data = _list_data(item)
    entries = data.get("entries", [])
    return ok(f"List {item.name}: {len(entries)} entr(y/ies)" + "".join(f"\n- {e['id']} {e['email']}" for e in entries), data)


@toolset.tool(title="Delete address list", annotations=DELETE)
async def delete_address_list(rt: Runtime, inbox_id: InboxId, list_id: ListId) -> CallToolResult:
    """Delete an address list and its entries."""
    await (await rt.client()).lists.delete(inbox_id, list_id)
    return ok(f"Deleted list {list_id}.", {"id": list_id, "deleted": True})


@toolset.tool(title="Add list entry", annotations=WRITE)
async def add_list_entry(
    rt: Runtime,
    inbox_id: InboxId,
    list_id: ListId,
    email: EmailAddress,
    display_name: Annotated[str | None, Field(max_length=200, pattern=r"^[^\r\n]*$")] = None,
    metadata: Annotated[dict[str, str] | None, Field(max_length=20, description="Small string key/values.")] = None,
) -> CallToolResult:
    """Add an address to a list."""
    entry = await (await rt.client()).lists.add_entry(inbox_id, list_id, email=email, display_name=display_name, metadata=metadata)
    return ok(f"Added {entry.email} to list {list_id} as entry {entry.id}.", entry.model_dump(exclude_none=True))


@toolset.tool(title="Remove list entry", annotations=DELETE)
async def remove_list_entry(
    rt: Runtime, inbox_id: InboxId, list_id: ListId, entry_id: ResourceId
) -> CallToolResult:
    """Remove an entry from a list."""
    await (await rt.client()).lists.remove_entry(inbox_id, list_id, entry_id)
    return ok(f"Removed entry {entry_id}.", {"id": entry_id, "deleted": True})
