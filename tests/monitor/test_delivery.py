"""Alert delivery: a real webhook receiver and a real SMTP server on 127.0.0.1, retries, the log,
and no alert delivered twice."""

import datetime as dt
import email
import email.policy
import json
import socket

import pytest

from devmode.db import open_db
from devmode.monitor import alerts, delivery
from devmode.monitor.monitoring import score_dataset
from tests.conftest import FakeScorer, run_cli
from tests.net_support import LocalServer, Route

LATER = dt.timedelta(hours=2)  # past every retry wait but the last


@pytest.fixture
def receiver():
    s = LocalServer()
    s.routes["/hook"] = Route()
    yield s
    s.close()


def fire(db):
    """Score news and evaluate its rules (scoring does): returns the open events."""
    score_dataset(db, "news", scorer=FakeScorer())
    return alerts.alert_events(db, "news")


@pytest.fixture
def news_db(news_copy):
    return news_copy


@pytest.fixture
def rule(news_db):
    with open_db(news_db) as db:
        return alerts.add_alert_rule(
            db, "news", kind="share_negative", threshold=0.4, min_volume=1, period="week"
        )


def test_webhook_gets_the_rule_the_band_and_the_stories_once(news_db, rule, receiver):
    with open_db(news_db) as db:
        channel = delivery.add_channel(db, rule.id, webhook=receiver.url("/hook"))
        delivery.add_channel(db, rule.id, webhook=receiver.url("/hook"), format="json")
        events = fire(db)
        assert [e["period_start"] for e in events] == ["2020-05-18"]
        assert db["devmode_alert_deliveries"].count == 2
        results = delivery.deliver_due(db)
        assert [r.status for r in results] == ["delivered", "delivered"]
        slack, structured = receiver.posts("/hook")
        assert set(slack) == {"text"}
        assert slack["text"].startswith("*devmode alert: news, week of 2020-05-18: 67% negative")
        assert "67% negative of 3 texts against the rule's line of 40%" in slack["text"]
        assert f"Rule {rule.id}: share negative above 40%" in slack["text"]
        assert "• [1] down bad (2020-05-18, -0.70)" in slack["text"]
        assert structured["alert"]["period_start"] == "2020-05-18"
        assert structured["rule"]["id"] == rule.id and structured["rule"]["threshold"] == 0.4
        assert [s["text"] for s in structured["stories"]] == ["down bad", "down awful", "up good"]
        # each story with the words behind it (the model that scored it, explained once)
        words = [s["top_words"] for s in structured["stories"]]
        assert all(isinstance(w, list) for w in words) and any(words)
        for story in structured["stories"]:
            if story["top_words"]:
                assert f"(top words: {', '.join(story['top_words'])})" in slack["text"]
        # evaluating and delivering again sends nothing more
        assert alerts.evaluate_alerts(db, "news") == []
        assert delivery.deliver_due(db, now=dt.datetime.now(dt.UTC) + LATER) == []
        assert len(receiver.posts("/hook")) == 2
        log = delivery.list_deliveries(db, "news")
        assert [(r["status"], r["attempts"]) for r in log] == [("delivered", 1)] * 2
        assert {r["target"] for r in log} == {receiver.url("/hook")}
        assert channel.describe().endswith("(slack)")


def test_spike_message_names_the_usual_share_and_the_line(news_db, receiver):
    with open_db(news_db) as db:
        score_dataset(db, "news", scorer=FakeScorer())
        rule = alerts.add_alert_rule(
            db, "news", kind="spike", threshold=1, window=3, period="day", min_volume=1
        )
        points = [{"share_negative": s, "volume": 5} for s in (0.1, 0.2, 0.3)]
        usual, line = alerts.rule_band(rule.settings, points)
        assert usual == pytest.approx(0.2) and line == pytest.approx(0.3)
        event_id = (
            db["devmode_alert_events"]
            .insert(
                {
                    "rule_id": rule.id,
                    "period_start": "2020-05-20",
                    "value": 3.0,
                    "share_negative": 0.5,
                    "volume": 2,
                    "usual": usual,
                    "band_high": line,
                    "created_at": "x",
                }
            )
            .last_pk
        )
        message = delivery.build_message(db, event_id)
        assert (
            "50% negative of 2 texts against a usual 20% (the rule fires above 30%)"
            in message.text()
        )
        assert message.subject.startswith("devmode alert: news, day of 2020-05-20")


def test_a_failing_webhook_is_retried_then_given_up(news_db, rule, receiver):
    receiver.routes["/hook"] = Route(statuses=[500, 503])
    with open_db(news_db) as db:
        delivery.add_channel(db, rule.id, webhook=receiver.url("/hook"))
        fire(db)
        first = delivery.deliver_due(db)
        assert first[0].status == "pending" and "HTTP 500" in first[0].error
        assert delivery.deliver_due(db) == []  # not due yet: it backs off
        now = dt.datetime.now(dt.UTC)
        assert "HTTP 503" in delivery.deliver_due(db, now=now + LATER)[0].error
        assert delivery.deliver_due(db, now=now + 2 * LATER)[0].status == "delivered"
        assert len(receiver.posts("/hook")) == 1
        keys = {r["headers"]["Idempotency-Key"] for r in receiver.requests}
        assert len(keys) == 1  # the same on every try: a receiver can drop a late duplicate
        row = delivery.list_deliveries(db)[0]
        assert (row["status"], row["attempts"]) == ("delivered", 3)

        receiver.routes["/hook"] = Route(statuses=[500] * 10)
        db["devmode_alert_events"].delete_where()
        db["devmode_alert_deliveries"].delete_where()
        fire(db)
        for i in range(delivery.MAX_ATTEMPTS):
            outcome = delivery.deliver_due(db, now=now + (i + 3) * 100 * LATER)
        assert outcome[0].status == "failed"
        assert "gave up after 5 tries" in delivery.list_deliveries(db)[0]["last_error"]


def test_a_hanging_webhook_times_out_and_nothing_is_lost(news_db, rule, receiver):
    receiver.routes["/hook"] = Route(delay=3)
    with open_db(news_db) as db:
        delivery.add_channel(db, rule.id, webhook=receiver.url("/hook"))
        events_before = fire(db)
        result = delivery.deliver_due(db, timeout=0.5)
        assert "did not answer within 0.5 s" in result[0].error
        assert db["devmode_alert_events"].count == len(events_before)
        assert delivery.list_deliveries(db)[0]["status"] == "pending"


def test_email_through_a_local_smtp_server(news_db, rule, monkeypatch):
    from aiosmtpd.controller import Controller

    class Inbox:
        messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append(envelope)
            return "250 OK"

    port = _free_port()
    controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with open_db(news_db) as db:
            with pytest.raises(delivery.InvalidChannel, match="No mail server is set up"):
                delivery.add_channel(db, rule.id, email="desk@example.com")
            delivery.set_smtp_settings(
                db,
                delivery.SmtpSettings(
                    host="127.0.0.1", port=port, security="none", sender="devmode@example.com"
                ),
            )
            delivery.add_channel(db, rule.id, email="desk@example.com")
            fire(db)
            assert [r.status for r in delivery.deliver_due(db)] == ["delivered"]
        (mail,) = Inbox.messages
        assert mail.rcpt_tos == ["desk@example.com"]
        body = mail.content.decode()
        assert "Subject: devmode alert: news, week of 2020-05-18" in body
        assert "down bad" in body
        html = next(
            part.get_content()
            for part in email.message_from_bytes(mail.content, policy=email.policy.default).walk()
            if part.get_content_type() == "text/html"
        )
        assert "<li>down bad (2020-05-18, -0.70)" in html and "<b>" in html
    finally:
        controller.stop()


def test_smtp_login_needs_its_password_variable(news_db, rule, monkeypatch):
    monkeypatch.delenv("DESK_SMTP_PASSWORD", raising=False)
    with open_db(news_db) as db:
        delivery.set_smtp_settings(
            db,
            delivery.SmtpSettings(
                host="127.0.0.1",
                port=_free_port(),
                user="desk",
                password_env="DESK_SMTP_PASSWORD",
                sender="devmode@example.com",
            ),
        )
        assert "password" not in db["devmode_settings"].get("smtp")["value"].replace(
            "password_env", ""
        )
        delivery.add_channel(db, rule.id, email="desk@example.com")
        fire(db)
        result = delivery.deliver_due(db)[0]
        assert (
            result.status == "pending" and "$DESK_SMTP_PASSWORD, which is not set" in result.error
        )


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"webhook": "hooks.slack.com/x"}, "http:// or https://"),
        ({"email": "not an address"}, "is not an e-mail address"),
        ({"webhook": "http://x/y", "format": "xml"}, "one of slack, json"),
        ({}, "Give one of"),
    ],
)
def test_bad_channels_are_refused(news_db, rule, kwargs, expected):
    with open_db(news_db) as db:
        with pytest.raises(delivery.InvalidChannel, match=expected):
            delivery.add_channel(db, rule.id, **kwargs)
        with pytest.raises(alerts.RuleNotFound):
            delivery.add_channel(db, 999, webhook="http://x/y")
        assert db["devmode_alert_channels"].count == 0


def test_removing_a_channel_ends_its_pending_deliveries(news_db, rule, receiver):
    with open_db(news_db) as db:
        channel = delivery.add_channel(db, rule.id, webhook=receiver.url("/hook"))
        fire(db)
        delivery.remove_channel(db, channel.id)
        assert delivery.deliver_due(db) == []
        assert delivery.list_deliveries(db)[0]["status"] == "failed"
        alerts.delete_alert_rule(db, rule.id)
        assert db["devmode_alert_deliveries"].count == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------------------
# Issue 26: a webhook's address is its secret


def test_webhook_addresses_are_masked_wherever_they_are_shown(news_db, rule, receiver):

    secret = "/services/T000/B000/s3cr3tT0k3n"
    receiver.routes[secret] = Route()
    url = receiver.url(secret)
    notify = run_cli(news_db, "alerts", "notify", str(rule.id), "--webhook", url)
    assert notify.exit_code == 0, notify.output
    with open_db(news_db) as db:
        fire(db)  # an alert to deliver
    watched = run_cli(news_db, "watch", "--once")
    assert "Alert delivered to webhook http://127.0.0.1:" in watched.stdout
    assert len(receiver.posts(secret)) == 1  # stored whole, delivered whole
    shown = [
        notify.output,
        watched.output,
        run_cli(news_db, "alerts", "rules", "news").output,
        run_cli(news_db, "alerts", "deliveries").output,
    ]
    for output in shown:
        assert "/services/…" in output and "s3cr3tT0k3n" not in output
    (logged,) = json.loads(run_cli(news_db, "alerts", "deliveries", "--json").output)
    assert logged["target"] == f"http://127.0.0.1:{receiver.httpd.server_address[1]}/services/…"


def test_an_address_with_user_info_is_refused_without_printing_it(news_db, rule):

    refused = run_cli(
        news_db, "alerts", "notify", str(rule.id), "--webhook", "http://desk:hunter2@127.0.0.1/h"
    )
    assert refused.exit_code == 1 and "hunter2" not in refused.output
    assert "Put the credential in the path or the query" in refused.stderr
    refused = run_cli(
        news_db, "sources", "add", "wire", "--feed", "https://u:hunter2@example.com/f"
    )
    assert refused.exit_code == 1 and "hunter2" not in refused.output
    assert "user name or password" in refused.stderr


def test_a_webhook_redirected_to_another_host_is_refused(news_db, rule, receiver):
    port = receiver.httpd.server_address[1]
    receiver.routes["/away"] = Route(status=307, location=f"http://localhost:{port}/hook")
    receiver.routes["/moved"] = Route(status=307, location="/hook")
    with open_db(news_db) as db:
        delivery.add_channel(db, rule.id, webhook=receiver.url("/away"))
        delivery.add_channel(db, rule.id, webhook=receiver.url("/moved"), format="json")
        fire(db)
        away, moved = delivery.deliver_due(db)
    assert away.status == "pending" and "a redirect to another host is not followed" in away.error
    assert moved.status == "delivered"  # the same host: 307 sends the same POST again
    (body,) = receiver.posts("/hook")
    assert body["alert"]["period_start"] == "2020-05-18"


def test_a_delivery_that_fails_unexpectedly_is_retried_and_the_others_go(
    news_db, rule, receiver, monkeypatch
):
    receiver.routes["/other"] = Route()
    real = delivery.send_webhook

    def send(url, body, **kwargs):
        if url.endswith("/hook"):
            raise ValueError("nobody planned for this")
        return real(url, body, **kwargs)

    monkeypatch.setattr(delivery, "send_webhook", send)
    with open_db(news_db) as db:
        delivery.add_channel(db, rule.id, webhook=receiver.url("/hook"))
        delivery.add_channel(db, rule.id, webhook=receiver.url("/other"))
        fire(db)
        failed, sent = delivery.deliver_due(db)
        log = {r["id"]: r for r in delivery.list_deliveries(db)}
    assert failed.status == "pending" and "ValueError: nobody planned for this" in failed.error
    assert sent.status == "delivered" and len(receiver.posts("/other")) == 1
    assert log[failed.delivery_id]["attempts"] == 1  # recorded, so it is retried, not stuck
