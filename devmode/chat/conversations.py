"""Chat sandbox conversations kept in SQLite: settings, messages, replies and their figures.

    conversation = create_conversation(db, settings)
    plan = assemble_context(..., history(db, conversation.id), prompt, ...)
    reply = chat.respond(backend, plan, settings.limits)
    add_exchange(db, conversation.id, prompt, reply, plan, settings)
    print(export_markdown(db, conversation.id))

An exchange (the message and its reply) is written in one transaction, so a conversation never
ends on a message without its reply. Settings hold the name of the API key's variable, never a
key, so nothing secret reaches the database or an export.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database
from sqlite_utils.db import NotFoundError

from devmode.chat.context import ContextPlan
from devmode.chat.limits import ChatSettings
from devmode.chat.replies import Reply, describe_reply
from devmode.db import utc_now
from devmode.errors import DevmodeError

# A new conversation's title is the first message, cut to this many characters.
TITLE_CHARS = 60


class ConversationNotFound(DevmodeError):
    """No conversation has that id."""


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    settings: ChatSettings
    created_at: str
    updated_at: str
    message_count: int = 0


@dataclass(frozen=True)
class Message:
    position: int
    role: str  # user | assistant
    content: str
    settings: ChatSettings | None
    context: list[dict[str, Any]]  # user messages: the parts sent and what was dropped
    report: dict[str, Any]  # assistant messages: chat.Reply's figures
    created_at: str

    @property
    def summary(self) -> str:
        """The limit report of a reply in one line ('' for a user message)."""
        if not self.report:
            return ""
        figures = {**self.report, "masked": tuple(self.report.get("masked", ()))}
        return describe_reply(Reply(text=self.content, **figures))

    @property
    def context_note(self) -> str:
        """What of the context was dropped or cut for this message ('' when all was sent):
        'Context: history dropped (31 tokens), pinned truncated (200 tokens)'."""
        dropped = [p for p in self.context if p["status"] != "kept"]
        if not dropped:
            return ""
        return "Context: " + ", ".join(
            f"{p['kind']} {p['status']} ({p['tokens']} tokens)" for p in dropped
        )


def conversation_titles(found: list[Conversation], new: Any = 0) -> dict[Any, str]:
    """How a list of conversations names each one, by id, after ``new``: a new conversation."""
    titles = {new: "New conversation"}
    titles.update({c.id: f"{c.title or 'untitled'} · {c.message_count} messages" for c in found})
    return titles


def create_conversation(db: Database, settings: ChatSettings, title: str = "") -> Conversation:
    now = utc_now()
    table = db["devmode_conversations"]
    table.insert(
        {
            "title": title,
            "settings": json.dumps(settings.to_dict()),
            "created_at": now,
            "updated_at": now,
        }
    )
    return get_conversation(db, table.last_pk)


def get_conversation(db: Database, conversation_id: int) -> Conversation:
    try:
        row = db["devmode_conversations"].get(conversation_id)
    except NotFoundError:
        raise ConversationNotFound(
            f"There is no conversation {conversation_id}. `python -m devmode conversations "
            "list` shows them."
        ) from None
    count = db["devmode_chat_messages"].count_where("conversation_id = ?", [conversation_id])
    return _conversation(row, count)


def find_conversation(db: Database, conversation_id: int) -> Conversation | None:
    """The conversation, or None when there is none with that id (a new one is being begun)."""
    try:
        return get_conversation(db, conversation_id)
    except ConversationNotFound:
        return None


def list_conversations(db: Database) -> list[Conversation]:
    """Newest activity first, with their message counts."""
    rows = db.execute(
        """select c.*, (select count(*) from devmode_chat_messages m
                        where m.conversation_id = c.id) as message_count
           from devmode_conversations c order by c.updated_at desc, c.id desc"""
    ).fetchall()
    columns = ["id", "title", "settings", "created_at", "updated_at", "message_count"]
    return [_conversation(dict(zip(columns, r, strict=True)), r[-1]) for r in rows]


def _conversation(row: dict[str, Any], count: int) -> Conversation:
    return Conversation(
        row["id"],
        row["title"],
        ChatSettings.from_dict(json.loads(row["settings"])),
        row["created_at"],
        row["updated_at"],
        count,
    )


def rename_conversation(db: Database, conversation_id: int, title: str) -> None:
    get_conversation(db, conversation_id)
    db["devmode_conversations"].update(conversation_id, {"title": title.strip()})


def delete_conversation(db: Database, conversation_id: int) -> None:
    get_conversation(db, conversation_id)
    with db.atomic():
        db.execute("delete from devmode_chat_messages where conversation_id = ?", [conversation_id])
        db.execute("delete from devmode_conversations where id = ?", [conversation_id])


def messages(db: Database, conversation_id: int) -> list[Message]:
    get_conversation(db, conversation_id)
    return [
        Message(
            r["position"],
            r["role"],
            r["content"],
            ChatSettings.from_dict(json.loads(r["settings"])) if r["settings"] else None,
            json.loads(r["context"]) if r["context"] else [],
            json.loads(r["report"]) if r["report"] else {},
            r["created_at"],
        )
        for r in db["devmode_chat_messages"].rows_where(
            "conversation_id = ?", [conversation_id], order_by="position"
        )
    ]


def history(db: Database, conversation_id: int) -> list[tuple[str, str]]:
    """``(role, text)`` pairs, oldest first: what ``chat.assemble_context`` takes."""
    return [(m.role, m.content) for m in messages(db, conversation_id)]


def add_exchange(
    db: Database,
    conversation_id: int,
    prompt: str,
    reply: Reply,
    plan: ContextPlan,
    settings: ChatSettings,
) -> None:
    """Store a message and its reply (one transaction) with the settings they were sent under;
    these settings become the conversation's current ones. The first message names an untitled
    conversation."""
    now = utc_now()
    context = [
        {"kind": p.kind, "role": p.role, "tokens": p.tokens, "status": p.status} for p in plan.parts
    ]
    report = reply.to_dict()
    report.pop("text")
    report.pop("tokens_per_s")  # derived: Reply computes it again
    stored = json.dumps(settings.to_dict())
    with db.atomic():  # read under the write lock: two exchanges never take the same position
        conversation = get_conversation(db, conversation_id)
        position = conversation.message_count
        db["devmode_chat_messages"].insert_all(
            [
                {
                    "conversation_id": conversation_id,
                    "position": position,
                    "role": "user",
                    "content": prompt,
                    "settings": stored,
                    "context": json.dumps(context),
                    "report": None,
                    "created_at": now,
                },
                {
                    "conversation_id": conversation_id,
                    "position": position + 1,
                    "role": "assistant",
                    "content": reply.text,
                    "settings": stored,
                    "context": None,
                    "report": json.dumps(report),
                    "created_at": utc_now(),
                },
            ]
        )
        changes = {"settings": stored, "updated_at": utc_now()}
        if not conversation.title:
            changes["title"] = _title(prompt)
        db["devmode_conversations"].update(conversation_id, changes)


def _title(prompt: str) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


# ----------------------------------------------------------------------------------------------
# Export


def export_dict(db: Database, conversation_id: int) -> dict[str, Any]:
    """The conversation as plain data: its settings and every message with its figures."""
    conversation = get_conversation(db, conversation_id)
    return {
        "id": conversation.id,
        "title": conversation.title,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
        "settings": conversation.settings.to_dict(),
        "messages": [
            {
                "position": m.position,
                "role": m.role,
                "content": m.content,
                "created_at": m.created_at,
                **({"context": m.context} if m.context else {}),
                **({"report": m.report} if m.report else {}),
                **({"settings": m.settings.to_dict()} if m.settings else {}),
            }
            for m in messages(db, conversation_id)
        ],
    }


def export_json(db: Database, conversation_id: int) -> str:
    return json.dumps(export_dict(db, conversation_id), indent=2, ensure_ascii=False)


def export_markdown(db: Database, conversation_id: int) -> str:
    """A readable transcript: the settings, then each message; under each reply, its report."""
    conversation = get_conversation(db, conversation_id)
    settings = conversation.settings
    limits = settings.limits
    lines = [
        f"# {conversation.title or f'Conversation {conversation.id}'}",
        "",
        f"- model: {settings.backend.describe()}",
        f"- context budget: {settings.budget_tokens} tokens; "
        f"{len(settings.pinned)} pinned document(s)",
        f"- limits: max tokens {limits.max_tokens}, temperature {limits.temperature:g}, "
        f"top-p {limits.top_p:g}, stop {list(limits.stop)}, banned {list(limits.banned)} "
        f"({limits.banned_action}), timeout {limits.timeout_s:g} s",
        "",
        "## System prompt",
        "",
        settings.system_prompt or "(none)",
        "",
    ]
    for m in messages(db, conversation_id):
        lines += [f"## {'You' if m.role == 'user' else 'Model'}", "", m.content or "(no text)", ""]
        dropped = [p for p in m.context if p["status"] != "kept"]
        if dropped:
            lines += [
                "> context: "
                + ", ".join(f"{p['kind']} {p['status']} ({p['tokens']} tokens)" for p in dropped),
                "",
            ]
        if m.report:
            lines += [f"> {m.summary}", ""]
    return "\n".join(lines)
