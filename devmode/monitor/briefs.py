"""A brief with each alert: a chat model writes 2-4 bullet points from the alert's top stories,
each citing its stories by id, and a check refuses any brief that cites what is not there or
says what its stories do not. A refused or failed brief is logged with its reason, and the
alert goes out with its story list alone.

    write_brief(db, event_id)                 # once per event, before its first delivery
    check_brief(text, stories, start, end)    # Verdict(ok, reason, bullets)

The prompt, the system prompt and the limits are read from ``brief_suite.yaml`` beside this
module; that file is also a suite (``python -m devmode bench run
devmode/monitor/brief_suite.yaml``), whose ``alert-brief`` assertion is ``check_reply`` here.

The check refuses a brief when any bullet cites no story, a story outside the alert's period or
an id that does not exist; shares fewer than ``MIN_SHARED_WORDS`` content words with the stories
it cites; or names a ticker or a number found in none of them.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.db import quote_identifier

from devmode import addresses, environment
from devmode.data import dates, ingest
from devmode.errors import in_words
from devmode.monitor import alerts, trends

log = logging.getLogger(__name__)

SUITE_FILE = Path(__file__).with_name("brief_suite.yaml")
# Stories the writer is shown (the alert's most negative, as its message lists them).
BRIEF_STORIES = 5
MAX_BULLETS = 4
MIN_SHARED_WORDS = 2
# ... and at least this share of the bullet's own content words: two shared words do not make
# a bullet about its story ("Agilent shares soar after the probe clears its chief" is not
# "a sharp drop hits Agilent shares").
MIN_SHARED_SHARE = 0.5
WRITTEN, REFUSED, FAILED = "written", "refused", "failed"
_BULLET = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+(.*\S)\s*$")
_CITATION = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d+)*)\s*\]")
_STORY_LINE = re.compile(r"^- (.*) \[(\d+)\]$")
_PERIOD_LINE = re.compile(r"^Stories of (\d{4}-\d{2}-\d{2}) to (\d{4}-\d{2}-\d{2})\b", re.M)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_TICKER = re.compile(r"(\$?)\b([A-Z]{1,5})\b")
_LINK = re.compile(r"(?:https?://|www\.)\S+", re.I)


@dataclass(frozen=True)
class Bullet:
    text: str  # without its citations
    stories: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "stories": list(self.stories)}

    def line(self) -> str:
        return f"• {self.text} [{', '.join(map(str, self.stories))}]"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    bullets: tuple[Bullet, ...]


# ----------------------------------------------------------------------------------------------
# The prompt


@functools.cache
def brief_suite() -> dict[str, Any]:
    """The suite file: system prompt, prompt template and limits (read once)."""
    import yaml

    return yaml.safe_load(SUITE_FILE.read_text(encoding="utf-8"))


def story_line(story: dict[str, Any]) -> str:
    """'- the text [12]', as the prompt lists a story (one line): the id where a bullet should
    cite it. Dates and tickers stay out: a small model copies them, and not always right."""
    return f"- {' '.join(str(story['text']).split())} [{story['id']}]"


def brief_messages(alert: str, start: str, end: str, stories: list[dict[str, Any]]) -> list[dict]:
    """The chat messages that ask for a brief."""
    suite = brief_suite()
    values = {
        "alert": alert,
        "start": start,
        "end": end,
        "stories": "\n".join(story_line(s) for s in stories),
    }
    prompt = suite["prompts"][0]["text"]
    for name, value in values.items():
        prompt = prompt.replace("{" + name + "}", value)
    return [
        {"role": "system", "content": suite["system_prompt"]},
        {"role": "user", "content": prompt},
    ]


def stories_in_prompt(prompt: str) -> tuple[dict[int, dict[str, Any]], str | None, str | None]:
    """The stories a brief's prompt lists (all of them from its period, so without dates),
    and the period: what ``story_line`` and the prompt's first line ('Stories of 2020-03-09 to 2020-03-15') wrote."""
    stories = {}
    for line in prompt.splitlines():
        match = _STORY_LINE.match(line.strip())
        if match:
            text, story_id = match.groups()
            stories[int(story_id)] = {"id": int(story_id), "date": None, "text": text}
    period = _PERIOD_LINE.search(prompt)
    return stories, *(period.groups() if period else (None, None))


# ----------------------------------------------------------------------------------------------
# The check


def parse_bullets(text: str) -> list[Bullet]:
    """The bullets of a reply: lines starting with -, *, • or a number, or any line that cites
    a story; each with the ids it cites."""
    bullets = []
    for line in (text or "").splitlines():
        match = _BULLET.match(line)
        body = match.group(1) if match else line.strip()
        cited = [int(x) for group in _CITATION.findall(body) for x in re.split(r"[,;]", group)]
        if not match and not cited:
            continue
        words = _CITATION.sub("", body).strip(" .;:-")
        if words or cited:
            bullets.append(Bullet(" ".join(words.split()), tuple(dict.fromkeys(cited))))
    return bullets


def content_words(text: str) -> set[str]:
    """The words that carry meaning: lowercase, stop words left out, a plural's s dropped."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    out = set()
    for word in _WORD.findall(text.lower()):
        word = word.strip("'-")
        if len(word) < 3 or word in ENGLISH_STOP_WORDS:
            continue
        if len(word) > 4 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.add(word)
    return out


def numbers_in(text: str) -> set[str]:
    """Numbers as written, thousands separators left out: '1,234.5' -> '1234.5'."""
    out = set()
    for number in _NUMBER.findall(text):
        plain = re.sub(r",(?=\d{3}\b)", "", number)
        out.add(plain)
        out.update(plain.split(","))  # '2,3' in a list is two numbers
    return out


def check_brief(
    text: str,
    stories: dict[int, dict[str, Any]],
    start: str | None,
    end: str | None,
    *,
    tickers: set[str] = frozenset(),
    own_ticker: str | None = None,
) -> Verdict:
    """Whether the brief ``text`` may go out. ``stories``: every story a bullet may cite, by id
    ({id: {date, text, ticker}}); ``start``..``end``: the alert's period (both days included);
    ``tickers``: names that read as tickers besides $CASHTAGS and the stories' own;
    ``own_ticker``: the alert's ticker, which any bullet may name."""
    bullets = parse_bullets(text)[:MAX_BULLETS]
    if not bullets:
        return Verdict(False, "the reply has no bullet points citing stories", ())
    known = {t for t in tickers} | {s["ticker"] for s in stories.values() if s.get("ticker")}
    known.discard(own_ticker)
    for i, bullet in enumerate(bullets, 1):
        problem = _bullet_problem(bullet, stories, start, end, known)
        if problem:
            return Verdict(False, f"bullet {i} ({bullet.text[:60]!r}) {problem}", tuple(bullets))
    return Verdict(
        True, f"{len(bullets)} bullet points, each backed by its stories", tuple(bullets)
    )


def _bullet_problem(
    bullet: Bullet,
    stories: dict[int, dict[str, Any]],
    start: str | None,
    end: str | None,
    tickers: set[str],
) -> str | None:
    if not bullet.stories:
        return "cites no story"
    for story_id in bullet.stories:
        story = stories.get(story_id)
        if story is None:
            return f"cites story {story_id}, which does not exist"
        if start and end and story.get("date") and not start <= story["date"] <= end:
            return (
                f"cites story {story_id} of {story['date']}, outside the alert's period "
                f"({start} to {end})"
            )
    cited = [stories[i] for i in bullet.stories]
    source = " ".join(s["text"] for s in cited)
    words = content_words(bullet.text)
    shared = words & content_words(source)
    if len(shared) < MIN_SHARED_WORDS:
        return (
            f"shares {len(shared)} content word{'s' if len(shared) != 1 else ''} with the "
            f"stories it cites (at least {MIN_SHARED_WORDS} are needed)"
        )
    if len(shared) < MIN_SHARED_SHARE * len(words):
        return (
            f"shares {len(shared)} of its {len(words)} content words with the stories it cites "
            f"(at least {MIN_SHARED_SHARE:.0%} are needed: the rest is not in them)"
        )
    for link in _LINK.findall(bullet.text):
        if link not in source:
            return f"names the link {link[:60]}, found in none of its stories"
    found_tickers = {s.get("ticker") for s in cited} | {t for _, t in _TICKER.findall(source)}
    for cash, name in _TICKER.findall(bullet.text):
        if (cash or name in tickers) and name not in found_tickers:
            return f"names {cash}{name}, found in none of its stories"
    days = [part for s in cited if s.get("date") for part in s["date"].split("-")]  # 2020, 03
    found_numbers = numbers_in(source) | set(days) | {d.lstrip("0") for d in days}
    for number in sorted(numbers_in(bullet.text)):
        if number not in found_numbers:
            return f"names the number {number}, found in none of its stories"
    return None


def without_cut_line(text: str, *, cut: bool) -> str:
    """The reply less its last line when the token limit cut that line short (it does not end
    with a citation): a bullet the model never finished is left out, not refused."""
    lines = text.rstrip().split("\n")
    if cut and len(lines) > 1 and not lines[-1].rstrip().endswith("]"):
        lines = lines[:-1]
    return "\n".join(lines)


def check_reply(text: str, prompt: str, *, cut: bool = False) -> tuple[bool, str]:
    """The ``alert-brief`` assertion: the reply checked against the stories and period its
    prompt lists, as a brief is (``cut``: the token limit ended it, see ``without_cut_line``)."""
    stories, start, end = stories_in_prompt(prompt)
    if not stories:
        return False, "the prompt lists no stories ('- text [12]' lines) to check against"
    text = without_cut_line(text, cut=cut)
    verdict = check_brief(text, stories, start, end)
    return verdict.ok, verdict.reason


# ----------------------------------------------------------------------------------------------
# Writing one


# (the rule's settings, the messages, the database file) -> a replies.Reply
Writer = Callable[[alerts.RuleSettings, list[dict[str, str]], str], Any]


def write_brief(db: Database, event_id: int, *, writer: Writer | None = None) -> dict[str, Any]:
    """The event's brief, written and checked the first time (then stored: written, refused
    or failed, with why); ``{}`` when its rule asks for none. Never raises for the backend or
    the check: the alert goes out either way."""
    event = db["devmode_alert_events"].get(event_id)
    rule = alerts.get_rule(db, event["rule_id"])
    if not rule.settings.brief:
        return {}
    if event.get("brief_status"):
        return stored_brief(event)
    try:
        values = _write(db, event, rule, writer or reply_from_backend)
    except Exception as e:  # noqa: BLE001 - a brief never holds an alert back
        values = {"brief_status": FAILED, "brief_note": _masked(in_words(e), rule.settings)}
    if values["brief_status"] != WRITTEN:
        log.warning(
            "Alert %s: brief %s: %s", event_id, values["brief_status"], values["brief_note"]
        )
    db.execute(
        """update devmode_alert_events set brief = ?, brief_status = ?, brief_note = ?
           where id = ? and brief_status is null""",
        [values.get("brief"), values["brief_status"], values["brief_note"], event_id],
    )
    return stored_brief(db["devmode_alert_events"].get(event_id))


def stored_brief(event: dict[str, Any]) -> dict[str, Any]:
    """``{"status", "note", "bullets"}`` of an event's brief ({} when none was asked for)."""
    if not event.get("brief_status"):
        return {}
    return {
        "status": event["brief_status"],
        "note": event["brief_note"],
        "bullets": json.loads(event["brief"]) if event.get("brief") else [],
    }


def _write(db: Database, event: dict[str, Any], rule: alerts.AlertRule, writer: Writer) -> dict:
    s = rule.settings
    dataset = db["devmode_datasets"].get(rule.dataset_id)["name"]
    start = event["period_start"]
    end = _last_day(s.period, start)
    stories = trends.texts_in_period(
        db, dataset, period=s.period, start=start, ticker=s.ticker, topic=s.topic,
        stories=s.stories, limit=BRIEF_STORIES,
    )  # fmt: skip
    if not stories:
        return {"brief_status": FAILED, "brief_note": "the alert's period has no stored stories"}
    scope = " · ".join(x for x in (s.ticker, s.topic) if x) or "all texts"
    alert = f"{scope} · {s.period} of {start}: {alerts.event_figure(event, s.kind)}"
    reply = writer(s, brief_messages(alert, start, end, stories), _db_file(db))
    if reply.failed or reply.stopped_by == "timeout":
        why = reply.detail.removeprefix("stopped: ")
        return {"brief_status": FAILED, "brief_note": _masked(why, s)}
    if not reply.text.strip():
        return {"brief_status": FAILED, "brief_note": "the backend answered nothing"}
    text = without_cut_line(reply.text, cut=reply.stopped_by == "max_tokens")
    shown = {int(x["id"]): x for x in stories}
    cited = {i for b in parse_bullets(text) for i in b.stories} - set(shown)
    verdict = check_brief(
        text,
        {**_stories_by_id(db, dataset, cited, s), **shown},
        start,
        end,
        tickers=set(trends.scored_tickers(db, dataset)),
        own_ticker=s.ticker,
    )
    if not verdict.ok:
        return {"brief_status": REFUSED, "brief_note": verdict.reason}
    return {
        "brief": json.dumps([b.to_dict() for b in verdict.bullets]),
        "brief_status": WRITTEN,
        "brief_note": f"{len(verdict.bullets)} bullet points in {reply.total_s:.1f} s",
    }


def _last_day(period: str, start: str) -> str:
    return dates.shift_period("day", dates.period_end(period, start), -1)


def _stories_by_id(
    db: Database, dataset: str, ids: set[int], settings: alerts.RuleSettings
) -> dict[int, dict[str, Any]]:
    """Stories a brief cites beyond those it was shown, in the rule's scope (its ticker
    column's value and topic): their date, text and ticker. One outside it does not exist for
    the brief."""
    if not ids:
        return {}
    record = ingest.get_dataset(db, dataset)
    text = quote_identifier(record.mapping.text)
    ticker = settings.ticker if record.mapping.ticker else None
    rows = db.execute(
        f"""select p.row_id, p.date, p.ticker, t.{text} from devmode_predictions p
            join {quote_identifier(dataset)} t on t.rowid = p.row_id
            where p.dataset_id = ? and p.task = 'sentiment' and p.date is not null
              and p.row_id in (select value from json_each(?))
              and (? is null or p.ticker = ?) and (? is null or p.topic = ?)""",
        [record.id, json.dumps(sorted(ids)), ticker, ticker, settings.topic, settings.topic],
    )
    return {r[0]: {"id": r[0], "date": r[1], "ticker": r[2], "text": str(r[3])} for r in rows}


def _masked(note: str, settings: alerts.RuleSettings) -> str:
    """A note with the endpoint's address masked (it may carry a token)."""
    if settings.brief and settings.brief != alerts.EMBEDDED_BRIEF:
        note = note.replace(settings.brief, addresses.mask(settings.brief))
    return note


# ----------------------------------------------------------------------------------------------
# The backend


def _db_file(db: Database) -> str:
    return db.execute("pragma database_list").fetchone()[2]


def reply_from_backend(settings: alerts.RuleSettings, messages: list[dict[str, str]], db_file: str):
    """The rule's backend's reply to ``messages``, under the suite file's limits and the
    rule's timeout (a ``replies.Reply``); the embedded model is kept beside ``db_file``."""
    from devmode.chat.context import ContextPlan
    from devmode.chat.limits import ChatLimits
    from devmode.chat.replies import respond

    limits = ChatLimits.from_dict({**brief_suite()["limits"], "timeout_s": settings.brief_timeout})
    return respond(_backend(settings, db_file), ContextPlan.from_messages(messages), limits)


def _backend(settings: alerts.RuleSettings, db_file: str):
    from devmode.chat.backends import OpenAIBackend

    if settings.brief == alerts.EMBEDDED_BRIEF:
        return _embedded(str(environment.chat_model_dir(db_file)))
    return OpenAIBackend(
        settings.brief, settings.brief_model, api_key_env=settings.brief_api_key_env
    )


@functools.cache
def _embedded(cache_dir: str):
    """The embedded chat model, loaded once per process (the watcher keeps it)."""
    from devmode.chat.backends import EmbeddedBackend

    return EmbeddedBackend.load(cache_dir)
