"""The webhooks toolset: signed HTTP delivery of inbox events, and usage metrics."""

from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp_types import CallToolResult
from pydantic import Field

from mam_mcp.toolkit.arguments import ResourceId
from mam_mcp.toolkit.results import ok
from mam_mcp.toolkit.runtime import Runtime
from mam_mcp.toolkit.toolsets import DELETE, READ, UPDATE, WRITE, Toolset

if TYPE_CHECKING:
    from mam_mcp.client.models import Webhook

toolset = Toolset("webhooks", "Webhooks for inbox events, and usage metrics.")

WebhookId = ResourceId
EventName = Literal["message.received", "message.sent", "message.bounced"]
WebhookUrl = Annotated[str, Field(max_length=2000, pattern=r"^https?://[^\s]+$")]
IsoTime = Annotated[str, Field(max_length=40, pattern=r"^\d{4}-\d{2}-\d{2}[T0-9:.+\-Z]*$")]


def _webhook_data(webhook: "Webhook") -> dict[str, Any]:
    return {"id": webhook.id, "url": webhook.url, "events": webhook.events, "is_active": webhook.is_active}


@toolset.tool(title="Create webhook", annotations=WRITE)
async def create_webhook(
    rt: Runtime,
    url: WebhookUrl,
    events: Annotated[list[EventName], Field(min_length=1, max_length=3)],
    inbox_id: Annotated[ResourceId | None, Field(description="Only this inbox's events.")] = None,
    workspace_id: Annotated[ResourceId | None, Field(description="Only this workspace's events (tenant keys).")] = None,
) -> CallToolResult:
    """Register a URL to receive signed POSTs for inbox events. The signing secret is written to a 0600 file, never shown."""
    webhook = await (await rt.client()).webhooks.create(url=url, events=list(events), inbox_id=inbox_id, workspace_id=workspace_id)
    data = _webhook_data(webhook)
    text = f"Created webhook {webhook.id} for {', '.join(webhook.events)} -> {webhook.url}."
    if webhook.secret:
        path = rt.save_secret(f"webhook-secret-{webhook.id}", webhook.secret)
        data["secret_file"] = str(path)
        text += (
            f" Its signing secret is saved to {path} (mode 0600): verify the x-mam-signature header "
            "(hex HMAC-SHA256 of the raw body) with it."
        )
    return ok(text, data)


@toolset.tool(title="List webhooks", annotations=READ)
async def list_webhooks(rt: Runtime) -> CallToolResult:
    """List webhooks."""
    hooks = await (await rt.client()).webhooks.list()
    items = [_webhook_data(h) for h in hooks]
    lines = "".join(f"\n- {h['id']} {h['url']} [{', '.join(h['events'])}]{'' if h['is_active'] else ' (disabled)'}" for h in items)
    return ok(f"{len(items)} webhook(s){lines}", {"webhooks": items})


@toolset.tool(title="Get webhook", annotations=READ)
async def get_webhook(rt: Runtime, webhook_id: WebhookId) -> CallToolResult:
    """Show one webhook (its secret is never shown)."""
    hook = await (await rt.client()).webhooks.get(webhook_id)
    return ok(f"Webhook {hook.id}: {hook.url} [{', '.join(hook.events)}].", _webhook_data(hook))


@toolset.tool(title="Update webhook", annotations=UPDATE)
async def update_webhook(
    rt: Runtime,
    webhook_id: WebhookId,
    url: WebhookUrl | None = None,
    events: Annotated[list[EventName] | None, Field(min_length=1, max_length=3)] = None,
    is_active: bool | None = None,
) -> CallToolResult:
    """Change a webhook's URL or events, or disable/enable it."""
    hook = await (await rt.client()).webhooks.update(
        webhook_id, url=url, events=list(events) if events else None, is_active=is_active
    )
    return ok(f"Updated webhook {hook.id}: {hook.url} [{', '.join(hook.events)}], active={hook.is_active}.", _webhook_data(hook))


@toolset.tool(title="Delete webhook", annotations=DELETE)
async def delete_webhook(rt: Runtime, webhook_id: WebhookId) -> CallToolResult:
    """Delete a webhook."""
    await (await rt.client()).webhooks.delete(webhook_id)
    return ok(f"Deleted webhook {webhook_id}.", {"id": webhook_id, "deleted": True})


@toolset.tool(title="Get metrics", annotations=READ)
async def get_metrics(
    rt: Runtime,
    since: Annotated[IsoTime | None, Field(description="ISO start time.")] = None,
    until: Annotated[IsoTime | None, Field(description="ISO end time.")] = None,
    workspace_id: ResourceId | None = None,
    inbox_id: ResourceId | None = None,
) -> CallToolResult:
    """Counts of sent, received and bounced mail (watch the bounce rate: high bounces pause an inbox)."""
    metrics = await (await rt.client()).metrics.get(since=since, until=until, workspace=workspace_id, inbox=inbox_id)
    counts = metrics.counts
    sent, bounced = counts.get("sent", 0), counts.get("bounced", 0)
    rate = f"{bounced / sent:.1%}" if sent else "n/a"
    return ok(
        f"Sent {sent}, received {counts.get('received', 0)}, bounced {bounced} (bounce rate {rate}).",
        {"counts": counts, "resources": metrics.resources, "window": metrics.window, "bounce_rate": rate},
    )
