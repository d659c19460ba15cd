"""The columns behind an alert's brief (``monitor/briefs.py``); migration 0020 adds them. What
the migration calls here has shipped: a change to these columns is a new migration."""

from __future__ import annotations

from sqlite_utils import Database


def add_brief_columns(db: Database) -> None:
    """A rule's brief backend (``embedded`` or an endpoint's URL, its model, the name of the
    environment variable holding its key: never the key, and the timeout), and an event's
    brief: its checked bullets, whether it was written, refused or failed, and why."""
    rules = db["devmode_alert_rules"]
    rules.add_column("brief", str)
    rules.add_column("brief_model", str)
    rules.add_column("brief_api_key_env", str)
    rules.add_column("brief_timeout", float)
    events = db["devmode_alert_events"]
    events.add_column("brief", str)  # JSON: [{"text": ..., "stories": [ids]}], when written
    events.add_column("brief_status", str)  # written | refused | failed; NULL: not tried yet
    events.add_column("brief_note", str)  # why it was refused or failed
