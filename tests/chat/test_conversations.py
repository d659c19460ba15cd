"""Conversations in SQLite: exchanges, settings, history, exports; never an API key."""

import json

import pytest

from devmode.chat import context, conversations
from devmode.chat.context import assemble_context
from devmode.chat.limits import BackendSpec, ChatLimits, ChatSettings
from devmode.chat.replies import Reply
from devmode.db import open_db


def words(text):
    return len(text.split())


def exchange(db, conversation_id, prompt, answer, settings, history=()):
    plan = assemble_context(
        settings.system_prompt,
        settings.pinned,
        list(history),
        prompt,
        budget_tokens=settings.budget_tokens,
        count_tokens=words,
    )
    reply = Reply(answer, "max_tokens", "stopped: max tokens (5)", 12, 5, 0.1, 0.4, ("rate",))
    conversations.add_exchange(db, conversation_id, prompt, reply, plan, settings)
    return plan


ENDPOINT = BackendSpec("endpoint", "http://127.0.0.1:9/v1", "m", api_key_name="TEAM_LLM_KEY")


def test_an_exchange_is_stored_with_its_settings_and_report(db):
    settings = ChatSettings(limits=ChatLimits(max_tokens=5, banned=("rate",)), backend=ENDPOINT)
    conversation = conversations.create_conversation(db, ChatSettings())
    exchange(db, conversation.id, "What moves bond prices?", "Rates and ████.", settings)
    stored = conversations.get_conversation(db, conversation.id)
    assert stored.title == "What moves bond prices?" and stored.message_count == 2
    assert stored.settings == settings  # the settings last used are the conversation's now
    user, model = conversations.messages(db, conversation.id)
    assert (user.role, user.content, model.role, model.content) == (
        "user",
        "What moves bond prices?",
        "assistant",
        "Rates and ████.",
    )
    assert [p["kind"] for p in user.context] == ["system", "prompt"]
    assert model.report["stopped_by"] == "max_tokens" and model.report["masked"] == ["rate"]
    assert model.summary.startswith("stopped: max tokens (5) · masked: 'rate' · prompt 12 tokens")
    assert conversations.history(db, conversation.id) == [
        ("user", "What moves bond prices?"),
        ("assistant", "Rates and ████."),
    ]


def test_everything_is_there_after_a_restart(db_path):
    with open_db(db_path) as db:
        conversation = conversations.create_conversation(db, ChatSettings(budget_tokens=64))
        exchange(db, conversation.id, "one", "two", ChatSettings(budget_tokens=64))
    with open_db(db_path) as db:  # a new connection: as after the app restarts
        [found] = conversations.list_conversations(db)
        assert found.message_count == 2 and found.settings.budget_tokens == 64
        assert [m.content for m in conversations.messages(db, found.id)] == ["one", "two"]


def test_dropped_turns_are_recorded_and_exported(db):
    settings = ChatSettings(system_prompt="Be brief.", budget_tokens=30)
    conversation = conversations.create_conversation(db, settings)
    exchange(db, conversation.id, "first question " * 3, "first answer " * 3, settings)
    history = conversations.history(db, conversation.id)
    plan = exchange(db, conversation.id, "second", "ok", settings, history)
    assert [p.status for p in plan.parts if p.kind == "history"] == ["dropped", "dropped"]
    markdown = conversations.export_markdown(db, conversation.id)
    assert "> context: history dropped (10 tokens), history dropped (10 tokens)" in markdown
    assert "> stopped: max tokens (5)" in markdown and "## System prompt\n\nBe brief." in markdown


def test_exports_name_the_key_variable_never_the_key(db, monkeypatch):
    monkeypatch.setenv("TEAM_LLM_KEY", "sk-live-very-secret")
    settings = ChatSettings(backend=ENDPOINT)
    conversation = conversations.create_conversation(db, settings)
    exchange(db, conversation.id, "hello", "hi", settings)
    exported = conversations.export_json(db, conversation.id)
    data = json.loads(exported)
    assert data["settings"]["backend"]["api_key_name"] == "TEAM_LLM_KEY"
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
    dump = "\n".join(db.iterdump())
    assert "sk-live-very-secret" not in exported + dump + conversations.export_markdown(
        db, conversation.id
    )


def test_a_failed_exchange_leaves_nothing_half_written(db):
    conversation = conversations.create_conversation(db, ChatSettings())
    # a reply row already sitting at the position the exchange's reply would take
    db["devmode_chat_messages"].insert(
        {
            "conversation_id": conversation.id,
            "position": 1,
            "role": "assistant",
            "content": "stray",
            "created_at": "x",
        }
    )
    with pytest.raises(Exception, match="UNIQUE"):
        exchange(db, conversation.id, "lost?", "no", ChatSettings())
    assert [m.content for m in conversations.messages(db, conversation.id)] == ["stray"]
    assert conversations.get_conversation(db, conversation.id).title == ""


def test_rename_delete_and_unknown_ids(db):
    conversation = conversations.create_conversation(db, ChatSettings())
    conversations.rename_conversation(db, conversation.id, "  Rates desk  ")
    assert conversations.get_conversation(db, conversation.id).title == "Rates desk"
    exchange(db, conversation.id, "q", "a", ChatSettings())
    conversations.delete_conversation(db, conversation.id)
    assert conversations.list_conversations(db) == []
    assert db["devmode_chat_messages"].count == 0
    with pytest.raises(conversations.ConversationNotFound, match="no conversation 7"):
        conversations.messages(db, 7)


def test_settings_are_validated_and_round_trip():
    settings = ChatSettings(
        system_prompt="s",
        pinned=("doc", "  "),
        budget_tokens=100,
        limits=ChatLimits(stop=("\n\n",), banned=("x",), seed=3),
        backend=ENDPOINT,
    )
    assert settings.pinned == ("doc",)
    assert ChatSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    with pytest.raises(context.ChatInputError, match="base URL such as http://127.0.0.1:8000/v1"):
        BackendSpec("endpoint", "localhost:8000")
    with pytest.raises(context.ChatInputError, match="budget_tokens must be from 16"):
        ChatSettings(budget_tokens=8)
