"""Alert briefs: the check that refuses what the stories do not say, the brief's prompt as a
suite, and briefs written by a real OpenAI-compatible endpoint on 127.0.0.1 and delivered with
the alert, or left out, with the reason, when the backend fails."""

import logging

import pytest

from devmode.db import open_db
from devmode.monitor import alerts, briefs, delivery, trends
from devmode.suites.files import read_suite
from tests.conftest import run_cli
from tests.net_support import chat_reply

STORIES = {
    101: {"id": 101, "date": "2024-03-05", "ticker": "ACME",
          "text": "Acme Corp cuts full-year revenue guidance to $4.1 billion as orders slow"},
    102: {"id": 102, "date": "2024-03-05", "ticker": "ACME",
          "text": "Acme shares fall 9% after the company lowers its outlook"},
    99: {"id": 99, "date": "2024-02-20", "ticker": "ACME",
         "text": "Acme opens a plant in Ohio, adding 400 jobs"},
}  # fmt: skip
GOOD = """- Acme cut its full-year revenue guidance to $4.1 billion as orders slowed [101]
- Acme shares fell 9% after the lower outlook [102]"""


def check(text, stories=STORIES, tickers=frozenset({"ACME", "GLBX"})):
    return briefs.check_brief(text, stories, "2024-03-04", "2024-03-10", tickers=tickers)


def test_a_brief_backed_by_its_stories_passes():
    verdict = check(GOOD)
    assert verdict.ok, verdict.reason
    assert [b.stories for b in verdict.bullets] == [(101,), (102,)]
    assert verdict.bullets[1].text == "Acme shares fell 9% after the lower outlook"
    numbered = "1. Acme shares fell 9% on a lower outlook [102, 101]\n2) ACME guidance cut [101]"
    assert check(numbered).ok, check(numbered).reason


@pytest.mark.parametrize(
    "brief,reason",
    [
        ("- Acme opened a plant in Ohio, adding jobs [99]",
         "cites story 99 of 2024-02-20, outside the alert's period (2024-03-04 to 2024-03-10)"),
        ("- Acme shares fell 9% after the outlook [555]", "cites story 555, which does not exist"),
        ("- Acme shares fell 12% after the lower outlook [102]",
         "names the number 12, found in none of its stories"),
        ("- The weather in Paris was mild and sunny all week [101]",
         "shares 0 content words with the stories it cites"),
        ("- Acme shares fell 9% while GLBX rallied on the outlook [102]",
         "names GLBX, found in none of its stories"),
        ("- Acme shares fell 9% and $XYZ followed on the outlook [102]",
         "names $XYZ, found in none of its stories"),
        ("- Acme shares fell after the lower outlook", "bullet 3 ('Acme shares fell after the lower outlook') cites no story"),
        ("- Acme shares soar to a record as a takeover bid from Initech lifts the outlook [102]",
         "content words with the stories it cites (at least 50% are needed"),
        ("- Acme shares fall 9%, see https://evil.example/x [102]",
         "names the link https://evil.example/x, found in none of its stories"),
        ("Acme had a bad week.", "the reply has no bullet points citing stories"),
        ("", "the reply has no bullet points citing stories"),
    ],
    ids=["outside-period", "no-such-id", "invented-number", "unrelated", "other-ticker",
         "cashtag", "uncited", "reversed", "link", "prose", "empty"],
)  # fmt: skip
def test_planted_bad_briefs_are_refused_with_the_reason(brief, reason):
    verdict = check(f"{GOOD}\n{brief}" if brief.startswith(("- ", "1.")) else brief)
    assert not verdict.ok and reason in verdict.reason


def test_a_one_letter_ticker_in_its_story_and_the_alerts_own_ticker_may_be_named():
    story = {3: {"id": 3, "date": "2024-03-05", "ticker": None,
                 "text": "A sharp drop hits Agilent shares after weak guidance"}}  # fmt: skip
    assert check("- A sharp drop hits Agilent shares [3]", story, tickers={"A", "AAPL"}).ok
    apple = {4: {"id": 4, "date": "2024-03-05", "ticker": None,
                 "text": "Apple cuts its iPhone orders after weak demand"}}  # fmt: skip
    bullet = "- AAPL: Apple cuts iPhone orders after weak demand [4]"
    assert not check(bullet, apple, tickers={"AAPL"}).ok  # a watchlist ticker, not in the text
    verdict = briefs.check_brief(bullet, apple, "2024-03-04", "2024-03-10", tickers={"AAPL"},
                                 own_ticker="AAPL")  # fmt: skip
    assert verdict.ok, verdict.reason


def test_only_the_first_four_bullets_are_kept():
    many = "\n".join([GOOD] * 3)
    assert check(many).ok and len(check(many).bullets) == briefs.MAX_BULLETS


# ----------------------------------------------------------------------------------------------
# The prompt as a suite


def test_the_brief_prompt_is_a_suite_whose_assertion_is_the_check():
    suite = read_suite(briefs.SUITE_FILE)
    assert suite.size == 3
    assert {a.name for a in suite.assertions} >= {"alert-brief", "latency"}
    for cell in suite.cells():
        stories, start, end = briefs.stories_in_prompt(cell.text)
        assert len(stories) == 3 and start and end
        first = next(iter(stories.values()))
        copied = f"- {first['text']} [{first['id']}]"
        assert briefs.check_reply(copied, cell.text) == (
            True,
            "1 bullet points, each backed by its stories",
        )
        made_up = f"- {first['text']} up 250% [{first['id']}]"
        assert briefs.check_reply(made_up, cell.text)[0] is False
    # the brief writer's messages are this file's prompt with an alert's stories in it
    messages = briefs.brief_messages(
        "ACME · week", "2024-03-04", "2024-03-10", list(STORIES.values())
    )
    assert messages[0]["content"] == suite.settings.system_prompt
    stories, start, end = briefs.stories_in_prompt(messages[1]["content"])
    assert (start, end) == ("2024-03-04", "2024-03-10")
    assert {i: s["text"] for i, s in stories.items()} == {i: s["text"] for i, s in STORIES.items()}


def test_a_bullet_cut_short_by_the_token_limit_is_left_out_not_refused():
    cut = f"{GOOD}\n- Acme shares fell"
    assert briefs.without_cut_line(cut, cut=True) == GOOD
    assert briefs.without_cut_line(cut, cut=False) == cut  # the model ended it: checked as is
    assert briefs.without_cut_line(GOOD, cut=True) == GOOD  # it ended with a citation


# ----------------------------------------------------------------------------------------------
# Written by an endpoint, delivered with the alert

RULE = {"kind": "spike", "threshold": 1.0, "window": 4, "min_volume": 3, "ticker": "ABBV"}


def briefed_rule(db, server, **brief):
    """The ABBV spike rule with a brief from the local endpoint, its alerts to /hook as JSON
    and as Slack text; returns the first event and its stories."""
    settings = {"brief": server.url("/v1"), "brief_model": "fixed", **brief}
    rule = alerts.add_alert_rule(db, "wire", **RULE, **settings)
    delivery.add_channel(db, rule.id, webhook=server.url("/hook"), format="json")
    db["devmode_alert_events"].delete_where("rule_id = ?", [rule.id])
    alerts.evaluate_alerts(db, "wire")  # raised again, now with the channel: queued for it
    events = sorted(alerts.alert_events(db, "wire"), key=lambda e: e["period_start"])
    first = events[0]
    stories = trends.texts_in_period(
        db, "wire", period="week", start=first["period_start"], ticker="ABBV", limit=5
    )
    return rule, first, stories


def a_valid_brief(stories):
    story = max(stories, key=lambda s: len(s["text"]))
    return f"- {story['text']} [{story['id']}]\n- Also: {story['text'][:80]} [{story['id']}]"


def test_a_checked_brief_travels_with_the_alert(wire_db, server):
    with open_db(wire_db) as db:
        rule, first, stories = briefed_rule(db, server)
        text = a_valid_brief(stories)
        server.routes["/v1/chat/completions"] = chat_reply(text)
        results = delivery.deliver_due(db)
        assert {r.status for r in results} == {"delivered"}
        stored = briefs.stored_brief(db["devmode_alert_events"].get(first["id"]))
        message = delivery.build_message(db, first["id"])
    assert stored["status"] == "written" and len(stored["bullets"]) == 2
    bodies = {b["alert"]["id"]: b for b in server.posts("/hook")}
    assert all(b["rule"]["brief"] == server.url("/v1") for b in bodies.values())  # masked form
    body = bodies[first["id"]]
    assert body["brief"] == stored["bullets"]
    assert "Brief (checked against the stories):" in message.text()
    assert f"[{body['brief'][0]['stories'][0]}]" in message.text()
    slack = delivery.webhook_body(message, "slack")["text"]
    assert "Brief (checked against the stories):" in slack and "• " in slack
    asked = next(r for r in server.requests if r["path"] == "/v1/chat/completions")
    assert asked["body"]["model"] == "fixed"
    assert str(stories[0]["id"]) in asked["body"]["messages"][-1]["content"]


@pytest.mark.parametrize(
    "route,status,note",
    [
        (chat_reply("- ABBV shares rose on record growth [999999]"), "refused",
         "cites story 999999, which does not exist"),
        (chat_reply(""), "failed", "the backend answered nothing"),
        (chat_reply("- late [1]", delay=3.0), "failed", "timeout (0.5 s)"),
        (None, "failed", "could not reach"),
    ],
    ids=["no-such-story", "answers-nothing", "slow", "unreachable"],
)  # fmt: skip
def test_without_a_good_brief_the_alert_still_goes_with_its_stories(
    wire_db, server, route, status, note, caplog, monkeypatch
):
    monkeypatch.setenv("BRIEF_KEY", "sk-secret-brief-key")
    with open_db(wire_db) as db:
        rule, first, _ = briefed_rule(db, server, brief_timeout=0.5, brief_api_key_env="BRIEF_KEY")
        if route is not None:
            server.routes["/v1/chat/completions"] = route
        else:
            server.routes.pop("/v1/chat/completions", None)
            db["devmode_alert_rules"].update(rule.id, {"brief": "http://127.0.0.1:9/v1"})
        with caplog.at_level(logging.WARNING, logger="devmode.monitor.briefs"):
            results = delivery.deliver_due(db)
        stored = briefs.stored_brief(db["devmode_alert_events"].get(first["id"]))
    assert {r.status for r in results} == {"delivered"}  # every alert, brief or not
    assert stored["status"] == status and note in stored["note"], stored
    body = next(b for b in server.posts("/hook") if b["alert"]["id"] == first["id"])
    assert body["brief"] is None and body["stories"]
    assert note in caplog.text and "sk-secret-brief-key" not in caplog.text + stored["note"]
    listed = run_cli(wire_db, "alerts", "list", "wire").output
    assert f"brief {status}: " in listed and "sk-secret-brief-key" not in listed


def test_the_cli_takes_brief_options_and_refuses_bad_ones(wire_db):
    ok = run_cli(wire_db, "alerts", "add", "wire", "--kind", "spike", "--threshold", "2",
                 "--brief", "http://127.0.0.1:8000/v1", "--brief-model", "smollm2",
                 "--brief-timeout", "5")  # fmt: skip
    assert ok.exit_code == 0, ok.output
    with open_db(wire_db) as db:
        (rule,) = alerts.list_alert_rules(db, "wire")
    assert rule.settings.brief_timeout == 5.0 and rule.settings.brief_model == "smollm2"
    assert rule.settings.describe_brief() == "a brief by smollm2 at http://127.0.0.1:8000/v1"
    listed = run_cli(wire_db, "alerts", "rules", "wire").output
    assert "with a brief by smollm2 at http://127.0.0.1:8000/v1" in listed
    for args, message in (
        (["--brief", "ftp://x"], "A brief endpoint is an http:// or https:// address"),
        (["--brief", "http://127.0.0.1:8000/v1"], "needs the model it serves: add --brief-model"),
        (["--kind", "model_health", "--threshold", "0.8", "--brief", "embedded"],
         "A model_health alert is about the model"),
        (["--brief", "embedded", "--brief-timeout", "0"], "brief_timeout"),
    ):  # fmt: skip
        bad = run_cli(wire_db, "alerts", "add", "wire", "--threshold", "0.5", *args)
        assert bad.exit_code != 0 and message in bad.output, bad.output
