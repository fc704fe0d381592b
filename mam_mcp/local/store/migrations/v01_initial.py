"""Schema version 1: the tables as the first release created them (mam-mcp 0.1.0, commit 401e9bb).

Never edit this file: a database at version 1 was made by exactly these statements. A change is
a new version (see this package's __init__).
"""

from __future__ import annotations

import sqlite3

from mam_mcp.local.store.engine import execute_script

VERSION = 1

SCHEMA = """
CREATE TABLE tenants (id TEXT PRIMARY KEY, created_at TEXT NOT NULL);
CREATE TABLE workspaces (
  id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, name TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX workspaces_tenant ON workspaces(tenant_id);
CREATE TABLE inboxes (
  id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, workspace_id TEXT, username TEXT NOT NULL,
  domain TEXT NOT NULL, email TEXT NOT NULL COLLATE NOCASE UNIQUE, display_name TEXT,
  metadata TEXT, created_at TEXT NOT NULL);
CREATE INDEX inboxes_owner ON inboxes(tenant_id, workspace_id, created_at);
CREATE TABLE addresses (
  email TEXT PRIMARY KEY COLLATE NOCASE, inbox_id TEXT NOT NULL, is_primary INTEGER NOT NULL,
  created_at TEXT NOT NULL);
CREATE INDEX addresses_inbox ON addresses(inbox_id);
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY, kind TEXT NOT NULL, tenant_id TEXT NOT NULL, workspace_id TEXT,
  inbox_id TEXT, name TEXT, prefix TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL, revoked_at TEXT);
CREATE TABLE raw_sources (id INTEGER PRIMARY KEY, raw BLOB NOT NULL);
CREATE TABLE threads (
  id TEXT PRIMARY KEY, inbox_id TEXT NOT NULL, subject TEXT, subject_norm TEXT,
  message_count INTEGER NOT NULL DEFAULT 0, last_message_at TEXT NOT NULL,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX threads_inbox_recent ON threads(inbox_id, last_message_at DESC);
CREATE INDEX threads_subject ON threads(inbox_id, subject_norm, last_message_at DESC);
CREATE TABLE messages (
  seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, inbox_id TEXT NOT NULL,
  thread_id TEXT NOT NULL, direction TEXT NOT NULL, status TEXT NOT NULL,
  message_id_hdr TEXT, in_reply_to TEXT, references_json TEXT NOT NULL DEFAULT '[]',
  from_address TEXT, from_name TEXT, to_json TEXT NOT NULL DEFAULT '[]',
  cc_json TEXT NOT NULL DEFAULT '[]', bcc_json TEXT NOT NULL DEFAULT '[]', subject TEXT,
  plain_body TEXT, html_body TEXT, headers_json TEXT, is_read INTEGER NOT NULL DEFAULT 0,
  deleted INTEGER NOT NULL DEFAULT 0, has_attachments INTEGER NOT NULL DEFAULT 0,
  raw_id INTEGER, at TEXT NOT NULL, sent_at TEXT, received_at TEXT, created_at TEXT NOT NULL);
CREATE INDEX messages_list ON messages(inbox_id, deleted, at DESC);
CREATE INDEX messages_direction ON messages(inbox_id, direction, deleted, at DESC);
CREATE INDEX messages_thread ON messages(thread_id, at);
CREATE INDEX messages_rfc_id ON messages(inbox_id, message_id_hdr);
CREATE VIRTUAL TABLE message_fts USING fts5(subject, sender, body, tokenize='unicode61 remove_diacritics 2');
CREATE TABLE attachments (
  id TEXT PRIMARY KEY, message_seq INTEGER NOT NULL, filename TEXT NOT NULL,
  content_type TEXT NOT NULL, size INTEGER NOT NULL, content_id TEXT, data BLOB NOT NULL);
CREATE INDEX attachments_message ON attachments(message_seq);
CREATE TABLE correspondents (
  inbox_id TEXT NOT NULL, address TEXT NOT NULL COLLATE NOCASE, PRIMARY KEY (inbox_id, address))
  WITHOUT ROWID;
CREATE TABLE drafts (
  id TEXT PRIMARY KEY, inbox_id TEXT NOT NULL, to_json TEXT NOT NULL, cc_json TEXT NOT NULL,
  bcc_json TEXT NOT NULL, subject TEXT, plain_body TEXT, html_body TEXT,
  reply_to_message_id TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX drafts_inbox ON drafts(inbox_id, updated_at DESC);
CREATE TABLE address_lists (
  id TEXT PRIMARY KEY, inbox_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT,
  created_at TEXT NOT NULL);
CREATE INDEX address_lists_inbox ON address_lists(inbox_id);
CREATE TABLE list_entries (
  id TEXT PRIMARY KEY, list_id TEXT NOT NULL, email TEXT NOT NULL, display_name TEXT,
  metadata TEXT, created_at TEXT NOT NULL);
CREATE INDEX list_entries_list ON list_entries(list_id, created_at);
CREATE TABLE domains (
  domain TEXT PRIMARY KEY COLLATE NOCASE, tenant_id TEXT NOT NULL, workspace_id TEXT,
  status TEXT NOT NULL, verify_token TEXT NOT NULL, created_at TEXT NOT NULL, verified_at TEXT);
CREATE TABLE webhooks (
  id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, workspace_id TEXT, inbox_id TEXT,
  url TEXT NOT NULL, events_json TEXT NOT NULL, secret TEXT NOT NULL,
  is_active INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL);
CREATE TABLE idempotency (
  inbox_id TEXT NOT NULL, key TEXT NOT NULL, message_id TEXT NOT NULL, created_at TEXT NOT NULL,
  PRIMARY KEY (inbox_id, key)) WITHOUT ROWID;
"""


def apply(conn: sqlite3.Connection) -> None:
    execute_script(conn, SCHEMA)
