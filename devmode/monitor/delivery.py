"""Alerts that reach people: webhooks (Slack, Teams, or any JSON receiver) and e-mail, with
retries and a log of every delivery.

    $ python -m devmode alerts notify 3 --webhook https://hooks.slack.com/services/...
    $ python -m devmode alerts notify 3 --email desk@example.com

    add_channel(db, rule_id, webhook=url)      # every new event of the rule is queued for it
    deliver_due(db)                            # send what is due; failures are retried later
    list_deliveries(db)                        # the log, newest first

An event is queued for each of its rule's channels in the transaction that stores the event
(``alerts.evaluate_alerts``), once: ``(event, channel)`` is unique. A delivery is claimed in a
transaction before it is sent, so two watchers never send the same one; a claim left by a
watcher that died is taken again after ``STALE_CLAIM_S``.

The message names the rule, the period, the share negative against its band, and links to the
stories that drove it (the most negative texts of the period).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
import smtplib
import ssl
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from typing import Any

from sqlite_utils import Database

from devmode import __version__, addresses
from devmode.data import ingest
from devmode.db import stamp, utc_now
from devmode.errors import DevmodeError, in_words
from devmode.monitor import alerts, briefs, reasons, trends
from devmode.monitor.alerts import Delivery
from devmode.specs import Settings, setting

WEBHOOK_FORMATS = ("slack", "json")
WEBHOOK_FORMAT_HELP = (
    "slack: a {\"text\": ...} body, which Slack's and Teams' incoming webhooks both show; json: "
    "the alert, its rule and its stories as fields."
)
# A delivery is tried this many times, waiting RETRY_BASE_S x 4**(attempt - 1) in between.
MAX_ATTEMPTS = 5
RETRY_BASE_S = 10
# Seconds a receiver or SMTP server may take to answer one attempt.
DELIVERY_TIMEOUT_S = 10.0
# A delivery claimed this long ago by a watcher that never finished it is taken again.
STALE_CLAIM_S = 300
# Bytes of a receiver's answer read (its status is what counts).
RECEIPT_BYTES = 64 * 1024
# Stories named in a message.
STORIES_IN_MESSAGE = 5
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class InvalidChannel(DevmodeError):
    """A webhook URL or address that cannot be delivered to; the message says what would."""


class DeliveryFailed(DevmodeError):
    """One attempt failed (HTTP 500, timeout, SMTP refusal): retried later."""


@dataclass(frozen=True)
class SmtpSettings(Settings):
    """The mail server alerts are sent through. The password is never stored: only the name of
    the environment variable that holds it."""

    error = InvalidChannel

    host: str = setting(
        "", "SMTP server, e.g. smtp.example.com.", label="SMTP server", flag="--smtp-host"
    )
    port: int = setting(
        587, "SMTP port.", minimum=1, maximum=65535, label="Port", flag="--smtp-port"
    )
    security: str = setting(
        "starttls",
        "starttls (port 587), ssl (port 465) or none (a relay on the local network).",
        choices=("starttls", "ssl", "none"),
        label="Security",
    )
    user: str = setting("", "User to log in as (empty: no login).", label="User")
    password_env: str = setting(
        "DEVMODE_SMTP_PASSWORD",
        "Environment variable holding the password; only its name is stored.",
        label="Password variable",
    )
    sender: str = setting("", "From address, e.g. devmode@example.com.", label="From")

    def check_together(self) -> None:
        if not self.host.strip():
            raise InvalidChannel(
                "The SMTP server is empty. Expected a host name, e.g. smtp.example.com."
            )
        if not _EMAIL.match(self.sender):
            raise InvalidChannel(
                f"The From address {self.sender!r} is not an e-mail address. Expected one like "
                "devmode@example.com."
            )


@dataclass(frozen=True)
class Channel:
    id: int
    rule_id: int
    kind: str
    target: str
    format: str | None
    created_at: str

    def describe(self) -> str:
        """'webhook https://hooks.slack.com/services/… (slack)': the address masked, as it is
        wherever it is shown (a webhook's address is its secret)."""
        if self.kind == "email":
            return f"e-mail to {self.target}"
        return f"webhook {addresses.mask(self.target)} ({self.format})"


# ----------------------------------------------------------------------------------------------
# Settings and channels


def smtp_settings(db: Database) -> SmtpSettings | None:
    row = next(db["devmode_settings"].rows_where("name = 'smtp'"), None)
    return SmtpSettings.from_stored(json.loads(row["value"])) if row else None


def set_smtp_settings(db: Database, settings: SmtpSettings) -> None:
    db["devmode_settings"].upsert(
        {"name": "smtp", "value": json.dumps(asdict(settings)), "updated_at": utc_now()}, pk="name"
    )


def add_channel(
    db: Database,
    rule_id: int,
    *,
    webhook: str | None = None,
    email: str | None = None,
    format: str = "slack",
) -> Channel:
    """Deliver the rule's new events to a webhook or an address."""
    alerts.get_rule(db, rule_id)
    if (webhook is None) == (email is None):
        raise InvalidChannel("Give one of --webhook URL or --email ADDRESS.")
    if webhook is not None:
        try:
            webhook = addresses.check_address(
                webhook,
                what="webhook",
                example="Copy the incoming-webhook URL from Slack, Teams or your receiver.",
            )
        except addresses.InvalidAddress as e:
            raise InvalidChannel(str(e)) from None
        if format not in WEBHOOK_FORMATS:
            raise InvalidChannel(
                f"Webhook format must be one of {', '.join(WEBHOOK_FORMATS)}; found {format!r}."
            )
        kind, target = "webhook", webhook
    else:
        email = email.strip()
        if not _EMAIL.match(email):
            raise InvalidChannel(
                f"{email!r} is not an e-mail address. Expected one like desk@example.com."
            )
        if smtp_settings(db) is None:
            raise InvalidChannel(
                "No mail server is set up, so e-mail cannot be sent. Set one first: python -m "
                "devmode alerts smtp --smtp-host smtp.example.com --sender devmode@example.com "
                "(--user, --password-env)."
            )
        kind, target, format = "email", email, None
    channel_id = (
        db["devmode_alert_channels"]
        .insert(
            {
                "rule_id": rule_id,
                "kind": kind,
                "target": target,
                "format": format,
                "created_at": utc_now(),
            }
        )
        .last_pk
    )
    return Channel(**db["devmode_alert_channels"].get(channel_id))


def add_target(db: Database, rule_id: int, target: str, *, format: str = "slack") -> Channel:
    """A webhook when ``target`` is an address, else an e-mail: one box on the page."""
    target = (target or "").strip()
    if "@" in target and "://" not in target:
        return add_channel(db, rule_id, email=target)
    return add_channel(db, rule_id, webhook=target, format=format)


def channels_by_rule(db: Database) -> dict[int, list[Channel]]:
    grouped: dict[int, list[Channel]] = {}
    for channel in list_channels(db):
        grouped.setdefault(channel.rule_id, []).append(channel)
    return grouped


def list_channels(db: Database, rule_id: int | None = None) -> list[Channel]:
    where, args = ("rule_id = ?", [rule_id]) if rule_id is not None else (None, [])
    return [
        Channel(**row)
        for row in db["devmode_alert_channels"].rows_where(where, args, order_by="id")
    ]


def remove_channel(db: Database, channel_id: int) -> None:
    """Stop delivering to a channel; its log is kept."""
    if not db["devmode_alert_channels"].count_where("id = ?", [channel_id]):
        raise InvalidChannel(
            f"No channel with id {channel_id}. See them with python -m devmode alerts rules DATASET."
        )
    with db.atomic():
        db.execute(
            "update devmode_alert_deliveries set status = ?, last_error = ? "
            "where channel_id = ? and status in (?, ?)",
            [
                Delivery.FAILED,
                "The channel was removed before this alert was delivered.",
                channel_id,
                *Delivery.UNFINISHED,
            ],
        )
        db["devmode_alert_channels"].delete(channel_id)


# ----------------------------------------------------------------------------------------------
# Messages


@dataclass(frozen=True)
class AlertMessage:
    subject: str
    lines: list[str]  # the body, a line each
    stories: list[dict[str, Any]]  # text, link, date, sentiment, top_words
    data: dict[str, Any]  # the generic JSON body

    def text(self) -> str:
        return "\n".join(self.lines)

    def html(self) -> str:
        """The e-mail's HTML part: the same lines, each story's top words in bold."""
        e = html.escape
        head = "".join(
            f"<p>{e(line)}</p>" for line in self.lines[: len(self.lines) - len(self.stories)]
        )
        items = "".join(
            f"<li>{e(s['text'])} ({e(str(s['date']))}, {s['sentiment']:+.2f})"
            + (
                " (top words: " + ", ".join(f"<b>{e(w)}</b>" for w in s["top_words"]) + ")"
                if s.get("top_words")
                else ""
            )
            + (f' <a href="{e(s["link"])}">{e(s["link"])}</a>' if s.get("link") else "")
            + "</li>"
            for s in self.stories
        )
        return f"<html><body>{head}<ul>{items}</ul></body></html>"


def build_message(db: Database, event_id: int) -> AlertMessage:
    """What an alert says: the rule, the period, the share against its band, and the stories."""
    event = db["devmode_alert_events"].get(event_id)
    rule = alerts.get_rule(db, event["rule_id"])
    dataset = db["devmode_datasets"].get(rule.dataset_id)["name"]
    s = rule.settings
    # a health alert is about the model, not about what the texts say: no stories that drove it
    stories = (
        []
        if s.kind == "model_health"
        else reasons.with_top_words(
            db,
            trends.texts_in_period(
                db,
                dataset,
                period=s.period,
                start=event["period_start"],
                ticker=s.ticker,
                topic=s.topic,
                limit=STORIES_IN_MESSAGE,
                with_model=True,
            ),
        )
    )
    brief = briefs.stored_brief(event)
    written = brief.get("status") == briefs.WRITTEN
    scope = "".join(f" · {x}" for x in (s.ticker, s.topic) if x)
    share = alerts.event_figure(event, s.kind)
    if event["usual"] is not None and s.kind == "volume_spike":
        band = (
            f"against a usual {event['usual']:,.0f} (the rule fires above "
            f"{event['band_high']:,.0f})"
        )
    elif event["usual"] is not None:
        band = (
            f"against a usual {event['usual']:.0%} (the rule fires above {event['band_high']:.0%})"
        )
    elif event["band_high"] is not None:
        side = "under" if s.kind == "model_health" else "against"
        band = f"{side} the rule's line of {event['band_high']:.0%}"
    else:
        band = ""
    subject = f"devmode alert: {dataset}{scope}, {s.period} of {event['period_start']}: {share}"
    lines = [
        f"{dataset}{scope} · {s.period} of {event['period_start']}",
        f"{share} {band}".strip() + ".",
        f"Rule {rule.id}: {rule.describe()}.",
        *(["Brief (checked against the stories):"] if written else []),
        *(briefs.Bullet(b["text"], tuple(b["stories"])).line() for b in brief.get("bullets", [])),
        "Stories that drove it:"
        if stories
        else "The period's texts are on the Monitor (Texts behind a point)."
        if s.kind == "model_health"
        else "No stored stories for this period.",
        *(
            f"• [{story['id']}] {story['text']} ({story['date']}, {story['sentiment']:+.2f})"
            + (f" (top words: {', '.join(story['top_words'])})" if story["top_words"] else "")
            + (f" {story['link']}" if story.get("link") else "")
            for story in stories
        ),
    ]
    data = {
        "source": f"devmode {__version__}",
        "dataset": dataset,
        "rule": {"id": rule.id, "description": rule.describe(), **s.shown()},
        "alert": {
            "id": event["id"],
            "period": s.period,
            "period_start": event["period_start"],
            "share_negative": event["share_negative"],
            "volume": event["volume"],
            "value": event["value"],
            "usual": event["usual"],
            "band_high": event["band_high"],
        },
        "stories": [
            {
                k: story[k]
                for k in ("id", "text", "link", "date", "sentiment", "ticker", "topic", "top_words")
            }
            for story in stories
        ],
        "brief": brief.get("bullets") if written else None,
        "text": "\n".join(lines),
    }
    return AlertMessage(subject, lines, stories, data)


def webhook_body(message: AlertMessage, format: str) -> dict[str, Any]:
    """slack: ``{"text": ...}`` (Slack's and Teams' incoming webhooks show it, links included);
    json: the structured message."""
    if format == "slack":
        return {"text": f"*{message.subject}*\n" + "\n".join(message.lines[1:])}
    return message.data


# ----------------------------------------------------------------------------------------------
# Sending


def send_webhook(
    url: str,
    body: dict[str, Any],
    *,
    key: str | None = None,
    timeout: float = DELIVERY_TIMEOUT_S,
) -> None:
    """POST ``body`` as JSON; any 2xx is delivered, anything else raises ``DeliveryFailed``.

    :param key: sent as ``Idempotency-Key``, the same on every retry: a receiver that answered
        too late for us (so we retry) can tell it has the alert already
    """
    headers = {"Content-Type": "application/json", "User-Agent": f"devmode/{__version__}"}
    if key:
        headers["Idempotency-Key"] = key
    try:
        answer = addresses.fetch(
            url,
            data=json.dumps(body).encode(),
            headers=headers,
            timeout=timeout,
            max_bytes=RECEIPT_BYTES,
            same_host=True,
        )
    except addresses.FetchFailed as e:
        if e.reason == "late":
            raise DeliveryFailed(f"The webhook did not answer within {timeout:g} s.") from None
        if e.reason == "too_big":  # it answered 2xx, then kept talking: the alert arrived
            return
        raise DeliveryFailed(f"The webhook was not delivered: {e}.") from None
    if not 200 <= answer.status < 300:
        raise DeliveryFailed(f"The webhook answered HTTP {answer.status}.")


def send_email(
    settings: SmtpSettings,
    to: str,
    message: AlertMessage,
    *,
    timeout: float = DELIVERY_TIMEOUT_S,
) -> None:
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = settings.sender
    mail["To"] = to
    mail.set_content(message.text())
    mail.add_alternative(message.html(), subtype="html")
    password = os.environ.get(settings.password_env, "") if settings.user else ""
    if settings.user and not password:
        raise DeliveryFailed(
            f"The SMTP password is read from ${settings.password_env}, which is not set for the "
            "watcher. Set it where the watcher runs, then the delivery is retried."
        )
    try:
        if settings.security == "ssl":
            client = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=timeout)
        with client:
            if settings.security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if settings.user:
                client.login(settings.user, password)
            client.send_message(mail)
    except (smtplib.SMTPException, OSError) as e:
        raise DeliveryFailed(
            f"The mail server {settings.host}:{settings.port} refused or failed: {e}."
        ) from None


@dataclass(frozen=True)
class DeliveryResult:
    delivery_id: int
    channel: str
    status: str  # Delivery.DELIVERED, PENDING (retried later) or FAILED (gave up)
    error: str | None = None

    def describe(self) -> str:
        if self.status == Delivery.DELIVERED:
            return f"Alert delivered to {self.channel}."
        again = "will retry" if self.status == Delivery.PENDING else "gave up"
        return f"Alert not delivered to {self.channel} ({again}): {self.error}"


def deliver_due(
    db: Database,
    *,
    now: dt.datetime | None = None,
    timeout: float = DELIVERY_TIMEOUT_S,
    brief_writer: briefs.Writer | None = None,
) -> list[DeliveryResult]:
    """Send every delivery that is due; a failure waits ``RETRY_BASE_S x 4**(attempts-1)`` and
    is tried again, up to ``MAX_ATTEMPTS`` times in all. An alert whose rule asks for a brief
    gets it written and checked first, once (``briefs.write_brief``); it goes out either way.

    :param brief_writer: what writes briefs (default: the rule's chat backend)
    """
    now = now or dt.datetime.now(dt.UTC)
    results = []
    for delivery in _claim_due(db, now):
        channel = Channel(**db["devmode_alert_channels"].get(delivery["channel_id"]))
        # the claim is renewed before each send: a backlog of briefs ahead of it (seconds
        # each) must not make it look abandoned to another watcher
        db["devmode_alert_deliveries"].update(
            delivery["id"], {"claimed_at": stamp(dt.datetime.now(dt.UTC))}
        )
        try:
            briefs.write_brief(db, delivery["event_id"], writer=brief_writer)
            message = build_message(db, delivery["event_id"])
            if channel.kind == "webhook":
                send_webhook(
                    channel.target,
                    webhook_body(message, channel.format),
                    key=f"devmode-delivery-{delivery['id']}",
                    timeout=timeout,
                )
            else:
                settings = smtp_settings(db)
                if settings is None:
                    raise DeliveryFailed(
                        "No mail server is set up (python -m devmode alerts smtp)."
                    )
                send_email(settings, channel.target, message, timeout=timeout)
        except Exception as e:  # noqa: BLE001 - recorded and retried; the others still go
            results.append(_record_attempt(db, delivery, channel, in_words(e)))
        else:
            results.append(_record_attempt(db, delivery, channel, None))
    return results


def _claim_due(db: Database, now: dt.datetime) -> list[dict[str, Any]]:
    at, stale = stamp(now), stamp(now - dt.timedelta(seconds=STALE_CLAIM_S))
    where = "(status = ? and next_attempt_at <= ?) or (status = ? and claimed_at < ?)"
    args = [Delivery.PENDING, at, Delivery.SENDING, stale]
    # the watcher asks every second: take the write lock only when something is due, then
    # read again under it (another watcher may have claimed it meanwhile)
    if not db["devmode_alert_deliveries"].count_where(where, args):
        return []
    with db.atomic():
        due = list(db["devmode_alert_deliveries"].rows_where(where, args, order_by="id"))
        for delivery in due:
            db["devmode_alert_deliveries"].update(
                delivery["id"], {"status": Delivery.SENDING, "claimed_at": at}
            )
    return due


def _record_attempt(
    db: Database, delivery: dict[str, Any], channel: Channel, error: str | None
) -> DeliveryResult:
    attempts = delivery["attempts"] + 1
    now = dt.datetime.now(dt.UTC)
    if error is None:
        values = {"status": Delivery.DELIVERED, "delivered_at": stamp(now), "last_error": None}
    elif attempts >= MAX_ATTEMPTS:
        values = {
            "status": Delivery.FAILED,
            "last_error": f"{error} (gave up after {attempts} tries)",
        }
    else:
        wait = RETRY_BASE_S * 4 ** (attempts - 1)
        values = {
            "status": Delivery.PENDING,
            "last_error": error,
            "next_attempt_at": stamp(now + dt.timedelta(seconds=wait)),
        }
    db["devmode_alert_deliveries"].update(delivery["id"], {**values, "attempts": attempts})
    return DeliveryResult(delivery["id"], channel.describe(), values["status"], error)


def list_deliveries(
    db: Database, dataset: str | None = None, *, limit: int = 100
) -> list[dict[str, Any]]:
    """The delivery log, newest first: what was sent where, when, after how many tries (a
    webhook's address masked: the log is for showing)."""
    where, args = "", []
    if dataset:
        where, args = "where r.dataset_id = ?", [ingest.get_dataset(db, dataset).id]
    rows = db.execute(
        f"""select d.id, d.status, d.attempts, d.last_error, d.created_at, d.delivered_at,
                   d.next_attempt_at, c.kind, c.target, c.format, e.rule_id, e.period_start,
                   e.share_negative, e.volume, r.period
            from devmode_alert_deliveries d
            join devmode_alert_events e on e.id = d.event_id
            join devmode_alert_rules r on r.id = e.rule_id
            left join devmode_alert_channels c on c.id = d.channel_id
            {where} order by d.id desc limit {int(limit)}""",
        args,
    )
    keys = [c[0] for c in rows.description]
    log = [dict(zip(keys, row, strict=True)) for row in rows.fetchall()]
    for row in log:
        if row["kind"] == "webhook":
            row["target"] = addresses.mask(row["target"])
    return log
