"""The domains toolset: custom sending domains and their DNS records."""

from typing import TYPE_CHECKING, Annotated, Any

from mcp_types import CallToolResult
from pydantic import Field

from mam_mcp.toolkit.arguments import ResourceId
from mam_mcp.toolkit.results import ok
from mam_mcp.toolkit.runtime import Runtime
from mam_mcp.toolkit.toolsets import DELETE, READ, UPDATE, WRITE, Toolset

if TYPE_CHECKING:
    from mam_mcp.client.models import Domain

toolset = Toolset("domains", "Custom sending domains and DNS records.")

DomainName = Annotated[str, Field(min_length=3, max_length=253, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}(?:\.[A-Za-z0-9-]{1,63})+$")]
WorkspaceOption = Annotated[
    ResourceId | None, Field(description="Workspace to put it in (tenant keys).")
]


def _domain_data(domain: "Domain") -> dict[str, Any]:
    return {
        "domain": domain.domain,
        "status": domain.status,
        "verified_at": domain.verified_at,
        "records": [r.model_dump(exclude_none=True) for r in domain.records],
    }


def _records_text(domain: "Domain") -> str:
    return "".join(
        f"\n- {r.type} {r.host} {r.value}" + (f" (priority {r.priority})" if r.priority is not None else "")
        for r in domain.records
    )


@toolset.tool(title="Create domain", annotations=WRITE)
async def create_domain(rt: Runtime, domain: DomainName, workspace_id: WorkspaceOption = None) -> CallToolResult:
    """Register a custom domain; returns the DNS records to add at the DNS provider, then call verify_domain."""
    created = await (await rt.client()).domains.create(domain=domain, workspace_id=workspace_id)
    return ok(f"Registered {created.domain} (status {created.status}). Add these DNS records:{_records_text(created)}", _domain_data(created))


@toolset.tool(title="List domains", annotations=READ)
async def list_domains(rt: Runtime) -> CallToolResult:
    """List custom domains and their verification status."""
    domains = await (await rt.client()).domains.list()
    return ok(
        f"{len(domains)} domain(s)" + "".join(f"\n- {d.domain}: {d.status}" for d in domains),
        {"domains": [_domain_data(d) for d in domains]},
    )


@toolset.tool(title="Get domain", annotations=READ)
async def get_domain(rt: Runtime, domain: DomainName) -> CallToolResult:
    """Show a domain's status and DNS records."""
    found = await (await rt.client()).domains.get(domain)
    return ok(f"{found.domain}: {found.status}.{_records_text(found)}", _domain_data(found))


@toolset.tool(title="Verify domain", annotations=UPDATE)
async def verify_domain(rt: Runtime, domain: DomainName) -> CallToolResult:
    """Re-check a domain's DNS records now and return its status."""
    checked = await (await rt.client()).domains.verify(domain)
    hint = "" if checked.status == "verified" else " DNS changes can take minutes to hours to propagate; check again later."
    return ok(f"{checked.domain}: {checked.status}.{hint}", _domain_data(checked))


@toolset.tool(title="Get zone file", annotations=READ)
async def get_zone_file(rt: Runtime, domain: DomainName) -> CallToolResult:
    """Get the domain's DNS records as a BIND zone file to import at a DNS provider."""
    zone = await (await rt.client()).domains.zone_file(domain)
    return ok(f"Zone file for {domain}:\n{zone}", {"domain": domain, "zone_file": zone})


@toolset.tool(title="Delete domain", annotations=DELETE)
async def delete_domain(rt: Runtime, domain: DomainName) -> CallToolResult:
    """Remove a custom domain."""
    await (await rt.client()).domains.delete(domain)
    return ok(f"Deleted domain {domain}.", {"domain": domain, "deleted": True})
