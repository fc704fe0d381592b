"""The admin toolsets (inbox_admin, lists, domains, workspaces, webhooks) on both backends."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from tests.tools.test_contract import FakeBackend, LocalBackend, backend, call, tools  # noqa: F401  (fixtures)
from tests.local.conftest import FAKE_TXT, local_backend, local_config  # noqa: F401  (fixtures)

Backend = FakeBackend | LocalBackend


async def test_inbox_admin_addresses_keys_raw_and_delete(tmp_path: Path, backend: Backend) -> None:  # noqa: F811
    inbox = await backend.seed_inbox("admin")
    await backend.deliver(inbox, sender="jane@example.com", subject="Raw me", text="body")
    async with tools(tmp_path, backend, toolsets="all") as client:
        shown = await call(client, "get_inbox", {"inbox_id": inbox["id"]})
        assert shown["email"] == inbox["email"]
        assert "password" not in str(shown).lower() and "imap" not in str(shown).lower()
        renamed = await call(client, "update_inbox", {"inbox_id": inbox["id"], "display_name": "Admin Bot"})
        assert renamed["display_name"] == "Admin Bot"
        alias = inbox["email"].replace("admin@", "alias@")
        added = await call(client, "add_inbox_address", {"inbox_id": inbox["id"], "email": alias})
        assert alias in [a["email"] for a in added["addresses"]]
        removed = await call(client, "remove_inbox_address", {"inbox_id": inbox["id"], "email": alias})
        assert alias not in [a["email"] for a in removed["addresses"]]

        key = await call(client, "create_inbox_key", {"inbox_id": inbox["id"], "name": "runtime"})
        key_file = Path(key["key_file"])
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        secret = key_file.read_text().strip()
        assert secret.startswith("ak_") and secret not in str(key)

        message = (await call(client, "list_messages", {"inbox_id": inbox["id"]}))["messages"][0]
        raw = await call(client, "get_raw_message", {"inbox_id": inbox["id"], "message_id": message["id"]})
        assert "Subject: Raw me" in raw["raw"] and raw["untrusted"] is True
        await call(client, "delete_message", {"inbox_id": inbox["id"], "message_id": message["id"]})
        assert (await call(client, "list_messages", {"inbox_id": inbox["id"]}))["messages"] == []

        checked = await call(client, "verify_email", {"email": "someone@example.com"})
        assert checked["valid"] is True
        await call(client, "delete_inbox", {"inbox_id": inbox["id"]})
        gone = await client.call_tool("get_inbox", {"inbox_id": inbox["id"]})
        assert gone.is_error and gone.content[0].text.startswith("NOT_FOUND:")


async def test_lists_and_entries(tmp_path: Path, backend: Backend) -> None:  # noqa: F811
    inbox = await backend.seed_inbox("lists")
    async with tools(tmp_path, backend, toolsets="lists") as client:
        created = await call(client, "create_address_list", {"inbox_id": inbox["id"], "name": "active leads"})
        entry = await call(client, "add_list_entry", {
            "inbox_id": inbox["id"], "list_id": created["id"], "email": "lead@acme.example",
            "display_name": "Jane", "metadata": {"source": "linkedin"},
        })
        full = await call(client, "get_address_list", {"inbox_id": inbox["id"], "list_id": created["id"]})
        assert [e["email"] for e in full["entries"]] == ["lead@acme.example"]
        assert full["entries"][0]["metadata"] == {"source": "linkedin"}
        listed = await call(client, "list_address_lists", {"inbox_id": inbox["id"]})
        assert [item["name"] for item in listed["lists"]] == ["active leads"]
        await call(client, "remove_list_entry", {"inbox_id": inbox["id"], "list_id": created["id"], "entry_id": entry["id"]})
        assert (await call(client, "get_address_list", {"inbox_id": inbox["id"], "list_id": created["id"]}))["entries"] == []
        await call(client, "delete_address_list", {"inbox_id": inbox["id"], "list_id": created["id"]})
        assert (await call(client, "list_address_lists", {"inbox_id": inbox["id"]}))["lists"] == []


async def test_domains_register_verify_zone_and_delete(tmp_path: Path, backend: Backend) -> None:  # noqa: F811
    async with tools(tmp_path, backend, toolsets="domains") as client:
        created = await call(client, "create_domain", {"domain": "mail.acme.example"})
        assert created["status"] in ("pending", "verifying") and created["records"]
        assert {r["type"] for r in created["records"]} & {"MX", "TXT"}
        pending = await call(client, "verify_domain", {"domain": "mail.acme.example"})
        assert pending["status"] != "verified"
        if isinstance(backend, FakeBackend):
            backend.fake.mark_domain_dns_ready("mail.acme.example")
        else:
            for record in created["records"]:
                if record["type"] == "TXT":
                    host = record["host"] if record["host"].endswith("mail.acme.example") else f"{record['host']}.mail.acme.example"
                    FAKE_TXT[host.lower()] = [record["value"]]
        verified = await call(client, "verify_domain", {"domain": "mail.acme.example"})
        assert verified["status"] == "verified"
        zone = await call(client, "get_zone_file", {"domain": "mail.acme.example"})
        assert "mail.acme.example" in zone["zone_file"]
        assert [d["domain"] for d in (await call(client, "list_domains", {}))["domains"]] == ["mail.acme.example"]
        await call(client, "delete_domain", {"domain": "mail.acme.example"})
        assert (await call(client, "list_domains", {}))["domains"] == []
    FAKE_TXT.clear()


async def test_workspaces_and_keys_never_show_the_key(tmp_path: Path, backend: Backend) -> None:  # noqa: F811
    async with tools(tmp_path, backend, toolsets="workspaces,email") as client:
        workspace = await call(client, "create_workspace", {"name": "Acme Corp"})
        assert [w["name"] for w in (await call(client, "list_workspaces", {}))["workspaces"]] == ["Acme Corp"]
        assert (await call(client, "get_workspace", {"workspace_id": workspace["id"]}))["name"] == "Acme Corp"
        key = await call(client, "create_workspace_key", {"workspace_id": workspace["id"], "name": "acme agent"})
        secret = Path(key["key_file"]).read_text().strip()
        assert secret.startswith("wk_") and secret not in str(key)
        keys = await call(client, "list_workspace_keys", {"workspace_id": workspace["id"]})
        assert [k["id"] for k in keys["keys"]] == [key["id"]] and secret not in str(keys)
        inbox = await call(client, "create_inbox", {"username": "support", "workspace_id": workspace["id"]})
        assert inbox["id"]
        await call(client, "revoke_workspace_key", {"workspace_id": workspace["id"], "key_id": key["id"]})
        await call(client, "delete_workspace", {"workspace_id": workspace["id"]})
        assert (await call(client, "list_workspaces", {}))["workspaces"] == []


async def test_webhooks_crud_secret_to_file_and_metrics(tmp_path: Path, backend: Backend) -> None:  # noqa: F811
    async with tools(tmp_path, backend, toolsets="webhooks") as client:
        created = await call(client, "create_webhook", {"url": "https://hooks.example/mam", "events": ["message.received"]})
        secret_file = Path(created["secret_file"])
        assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600 and secret_file.read_text().strip()
        assert secret_file.read_text().strip() not in str(created)
        updated = await call(client, "update_webhook", {"webhook_id": created["id"], "events": ["message.received", "message.bounced"], "is_active": False})
        assert updated["is_active"] is False and set(updated["events"]) == {"message.received", "message.bounced"}
        shown = await call(client, "get_webhook", {"webhook_id": created["id"]})
        assert shown["url"] == "https://hooks.example/mam"
        assert [h["id"] for h in (await call(client, "list_webhooks", {}))["webhooks"]] == [created["id"]]
        await call(client, "delete_webhook", {"webhook_id": created["id"]})
        assert (await call(client, "list_webhooks", {}))["webhooks"] == []
        metrics: dict[str, Any] = await call(client, "get_metrics", {})
        assert set(metrics["counts"]) >= {"sent", "received", "bounced"}
