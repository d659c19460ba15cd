"""Checks on one reply of a suite: each says pass or fail, and why.

    check = Assertion.from_dict({"type": "stopped-by", "value": "stop_sequence", "which": "."})
    outcome = evaluate(check, reply)                # Outcome(passed=True, reason="...")

The types follow promptfoo's names where promptfoo has the same check (``contains``,
``icontains``, ``contains-any``, ``equals``, ``starts-with``, ``regex``, ``is-json``,
``latency``, ``finish-reason``, ``similar``, ``llm-rubric``; ``not-`` in front of any type
turns it around), so a promptfoo file's assertions read unchanged. devmode adds what only it
knows: ``stopped-by`` (which limit ended the reply: end, max_tokens, stop_sequence, banned_word,
timeout, context_overflow, api_error, and with ``which`` the very stop sequence or banned word),
``completion-tokens`` (at most N), ``first-token`` (milliseconds to the first token) and
``alert-brief`` (the check an alert's brief passes, against the stories its prompt lists).

A regular expression runs with a time limit (the ``regex`` library's timeout), so one that
backtracks catastrophically fails its cell instead of hanging the suite; a JSON schema is
checked when the suite is read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from devmode.chat.replies import STOP_REASONS
from devmode.errors import DevmodeError

# Seconds a regular expression may take on one reply before the check fails.
REGEX_SECONDS = 1.0
# promptfoo's default for ``similar``.
SIMILARITY_THRESHOLD = 0.75
NEGATION = "not-"
# promptfoo's classifier names its model as a provider: devmode:REF.
DEVMODE_PROVIDER = "devmode:"
# promptfoo's finish reasons, as devmode's limits: "stop" is the model's own end or a stop sequence.
FINISH_REASONS = {"stop": ("end", "stop_sequence"), "length": ("max_tokens",)}

# type -> (what its value is, help). "text": a string or a list of strings; "number":
# a threshold; "schema": an optional JSON schema; "reason": one of STOP_REASONS.
TYPES: dict[str, tuple[str, str]] = {
    "contains": ("text", "The reply holds this text (each of a list)."),
    "icontains": ("text", "The same, any case."),
    "contains-any": ("text", "The reply holds at least one of these."),
    "icontains-any": ("text", "The same, any case."),
    "contains-all": ("text", "The reply holds every one of these."),
    "icontains-all": ("text", "The same, any case."),
    "equals": ("text", "The reply is exactly this (spaces around it aside)."),
    "starts-with": ("text", "The reply begins with this."),
    "regex": ("pattern", "A regular expression found in the reply (time-limited)."),
    "is-json": ("schema", "The reply is valid JSON, and matches the JSON schema if one is given."),
    "stopped-by": (
        "reason",
        "The limit that ended the reply: " + ", ".join(STOP_REASONS) + "; `which` names the "
        "stop sequence or banned word.",
    ),
    "finish-reason": (
        "finish",
        "promptfoo's: stop (the model's end or a stop sequence) or length.",
    ),
    "completion-tokens": ("number", "At most this many completion tokens."),
    "latency": ("number", "The whole reply within this many milliseconds."),
    "first-token": ("number", "The first token within this many milliseconds."),
    "similar": (
        "text",
        f"Cosine similarity to the expected answer (the embedded sentence encoder) at least "
        f"`threshold` (default {SIMILARITY_THRESHOLD}).",
    ),
    "llm-rubric": ("text", "A grading model (an endpoint) judges the reply by this rubric."),
    "classifier": (
        "label",
        "One of devmode's classifiers (`model`: a run id, active-sentiment, active-topic or "
        "base) reads the reply as `value`; with `threshold`, P(value) is at least it.",
    ),
    "alert-brief": (
        "none",
        "The reply is an alert brief that passes the check every brief passes before it is "
        "sent, against the stories and period its prompt lists (devmode/monitor/briefs.py).",
    ),
}


class InvalidAssertion(DevmodeError):
    """An assertion that cannot be used: unknown type, missing value, bad regex or schema."""


@dataclass(frozen=True)
class Assertion:
    type: str  # one of TYPES
    value: Any = None
    threshold: float | None = None
    which: str | None = None  # stopped-by: the stop sequence or banned word
    negate: bool = False  # written "not-contains" and so on
    model: str | None = None  # classifier: a model reference (3, active-sentiment, base)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "") -> Assertion:
        """From a suite file's ``{type, value, threshold, which}``; ``where`` names the place
        for the message when something is wrong (``suite.yaml line 12``)."""
        at = f" ({where})" if where else ""
        if not isinstance(values, Mapping) or "type" not in values:
            raise InvalidAssertion(
                f"Expected an assertion with a type, such as {{type: contains, value: bond}}; "
                f"found {values!r}{at}."
            )
        unknown = set(values) - {"type", "value", "threshold", "which", "weight", "metric"}
        unknown -= {"model", "provider"}
        if unknown:
            raise InvalidAssertion(
                f"An assertion has type, value, threshold, which and (a classifier) model; found "
                f"{sorted(unknown)}{at}. Remove them."
            )
        kind = str(values["type"]).strip()
        negate = kind.startswith(NEGATION)
        base = kind[len(NEGATION) :] if negate else kind
        if base not in TYPES:
            raise InvalidAssertion(
                f"Unknown assertion type {kind!r}{at}. Expected one of {', '.join(TYPES)} "
                f"(or not- in front of one)."
            )
        if base != "classifier" and values.get("model") is not None:
            raise InvalidAssertion(
                f"model names the classifier of a classifier assertion; found it on {kind}{at}. "
                "Remove it, or make the type classifier."
            )
        threshold = values.get("threshold")
        assertion = cls(
            base,
            values.get("value"),
            None if threshold is None else _number(threshold, kind, at),
            values.get("which"),
            negate,
            _classifier_model(values, at) if base == "classifier" else None,
        )
        assertion.check(at)
        return assertion

    @property
    def name(self) -> str:
        return f"{NEGATION if self.negate else ''}{self.type}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.name}
        if self.value is not None:
            out["value"] = self.value
        if self.threshold is not None:
            out["threshold"] = self.threshold
        if self.which is not None:
            out["which"] = self.which
        if self.model is not None:
            out["model"] = self.model
        return out

    def check(self, at: str = "") -> None:
        """Refuse a value this type cannot use, before any reply is asked for."""
        kind, _ = TYPES[self.type]
        value = self.value
        if kind in ("text", "pattern") and not _texts(value):
            raise InvalidAssertion(f"{self.name} needs a value: the text to look for{at}.")
        if kind == "pattern":
            import regex

            for pattern in _texts(value):
                try:
                    regex.compile(pattern)
                except regex.error as e:
                    raise InvalidAssertion(
                        f"The regex {pattern!r} does not compile: {e}{at}. Fix the pattern "
                        "(escape ( [ { . * + ? with a backslash to match them as text)."
                    ) from None
        if kind == "schema" and value is not None:
            from jsonschema.exceptions import SchemaError
            from jsonschema.validators import validator_for

            schema = _schema(value, at)
            try:
                validator_for(schema).check_schema(schema)
            except SchemaError as e:
                raise InvalidAssertion(
                    f"The JSON schema of {self.name} is not valid: {e.message}{at}."
                ) from None
        if kind == "reason" and value not in STOP_REASONS:
            raise InvalidAssertion(
                f"stopped-by needs one of {', '.join(STOP_REASONS)}; found {value!r}{at}."
            )
        if kind == "label":
            if not isinstance(value, str) or not value.strip():
                raise InvalidAssertion(
                    f"{self.name} needs a value: the class to read the reply as, e.g. negative{at}."
                )
            if self.threshold is not None and not 0 < self.threshold <= 1:
                raise InvalidAssertion(
                    f"{self.name}'s threshold is a probability above 0 and at most 1; found "
                    f"{self.threshold:g}{at}."
                )
        if kind == "finish" and value not in FINISH_REASONS:
            raise InvalidAssertion(f"finish-reason needs stop or length; found {value!r}{at}.")
        if kind == "number":
            limit = self.threshold if value is None else _number(value, self.name, at)
            if limit is None or limit < 0:
                raise InvalidAssertion(
                    f"{self.name} needs a number at least 0 (value or threshold){at}."
                )


@dataclass(frozen=True)
class Outcome:
    passed: bool
    reason: str


# How a cell's reply reaches a check: the text and Reply's figures (``Reply.to_dict()``).
Similarity = Callable[[str, Sequence[str]], list[float]]
# (model reference, text) -> {label: probability}
Classify = Callable[[str, str], dict[str, float]]
Grader = Callable[[str, str], tuple[bool, str]]


def evaluate(
    assertion: Assertion,
    reply: Mapping[str, Any],
    *,
    similarity: Similarity | None = None,
    grader: Grader | None = None,
    classify: Classify | None = None,
) -> Outcome:
    """Whether ``reply`` (a ``Reply.to_dict()``: text, stopped_by, which, completion_tokens,
    first_token_s, total_s; and the ``prompt``) passes ``assertion``, and why, in a few
    words."""
    passed, reason = _evaluate(assertion, reply, similarity, grader, classify)
    if assertion.negate:
        return Outcome(not passed, f"not: {reason}")
    return Outcome(passed, reason)


def _evaluate(a: Assertion, reply, similarity, grader, classify=None) -> tuple[bool, str]:
    text = reply.get("text") or ""
    kind = a.type
    if kind in ("contains", "icontains", "contains-all", "icontains-all"):
        fold = kind.startswith("i")
        missing = [v for v in _texts(a.value) if not _holds(text, v, fold)]
        if missing:
            return False, f"missing {', '.join(map(repr, missing))}"
        return True, f"holds {', '.join(map(repr, _texts(a.value)))}"
    if kind in ("contains-any", "icontains-any"):
        found = [v for v in _texts(a.value) if _holds(text, v, kind.startswith("i"))]
        if found:
            return True, f"holds {found[0]!r}"
        return False, f"none of {', '.join(map(repr, _texts(a.value)))}"
    if kind == "equals":
        expected = str(a.value)
        if text.strip() == expected.strip():
            return True, "equal"
        return False, f"expected {_short(expected)!r}, got {_short(text)!r}"
    if kind == "starts-with":
        if text.lstrip().startswith(str(a.value)):
            return True, f"starts with {a.value!r}"
        return False, f"starts with {_short(text, 30)!r}"
    if kind == "regex":
        return _regex(text, _texts(a.value))
    if kind == "is-json":
        return _json(text, a.value)
    if kind == "stopped-by":
        stopped, which = reply.get("stopped_by"), reply.get("which")
        if stopped != a.value:
            return False, f"ended by {stopped}" + (f" {which!r}" if which else "")
        if a.which is not None and which != a.which:
            return False, f"ended by {stopped} {which!r}, not {a.which!r}"
        return True, f"ended by {stopped}" + (f" {which!r}" if which else "")
    if kind == "finish-reason":
        stopped = reply.get("stopped_by")
        return stopped in FINISH_REASONS[a.value], f"ended by {stopped}"
    if kind == "completion-tokens":
        limit, used = _limit(a), reply.get("completion_tokens")
        if used is None:
            return False, "no token count came back"
        return used <= limit, f"{used} tokens (at most {limit:g})"
    if kind in ("latency", "first-token"):
        seconds = reply.get("total_s" if kind == "latency" else "first_token_s")
        if seconds is None:
            return False, "no first token came" if kind == "first-token" else "no timing"
        ms, limit = seconds * 1000, _limit(a)
        return ms <= limit, f"{ms:,.0f} ms (at most {limit:,.0f})"
    if kind == "similar":
        if similarity is None:
            return False, "no sentence encoder to compare with"
        threshold = SIMILARITY_THRESHOLD if a.threshold is None else a.threshold
        best = max(similarity(text, _texts(a.value)))
        return best >= threshold, f"similarity {best:.2f} (at least {threshold:.2f})"
    if kind == "classifier":
        if classify is None:
            return False, "no classifier to read the reply with"
        return _classified(a, classify(a.model, text))
    if kind == "alert-brief":
        from devmode.monitor import briefs

        cut = reply.get("stopped_by") == "max_tokens"
        return briefs.check_reply(text, reply.get("prompt") or "", cut=cut)
    if kind == "llm-rubric":
        if grader is None:
            return False, "no grading endpoint set for the suite (grader: base_url, model)"
        return grader(text, str(a.value))
    raise InvalidAssertion(f"Unknown assertion type {kind!r}.")  # from_dict refuses these


def _classified(a: Assertion, probabilities: dict[str, float]) -> tuple[bool, str]:
    top = max(probabilities, key=probabilities.get)
    p = probabilities.get(a.value, 0.0)
    if a.threshold is None:
        return top == a.value, f"{a.model} reads {top} (P({a.value}) {p:.2f})"
    return p >= a.threshold, f"{a.model}: P({a.value}) {p:.2f} (at least {a.threshold:g})"


def _classifier_model(values: Mapping[str, Any], at: str) -> str:
    """A classifier's model: devmode's ``model: REF``, or promptfoo's ``provider: devmode:REF``
    (any other provider is refused by name)."""
    model, provider = values.get("model"), values.get("provider")
    if model is not None and provider is not None:
        raise InvalidAssertion(
            f"A classifier has model: REF or promptfoo's provider: devmode:REF, not both; found "
            f"model {model!r} and provider {provider!r}{at}. Keep one."
        )
    if provider is not None:
        text = str(provider)
        if not text.startswith(DEVMODE_PROVIDER):
            raise InvalidAssertion(
                f"A classifier's provider is devmode:REF (one of devmode's classifiers); found "
                f"{text!r}{at}, which devmode does not run. Use e.g. "
                "provider: devmode:active-sentiment."
            )
        model = text[len(DEVMODE_PROVIDER) :]
    if not model:
        raise InvalidAssertion(
            f"A classifier needs model: a run id, active-sentiment, active-topic or base{at}."
        )
    from devmode.models.references import InvalidReference, parse_reference

    try:
        return str(parse_reference(str(model)))
    except InvalidReference as e:
        raise InvalidAssertion(f"{e}{at}") from None


def _regex(text: str, patterns: list[str]) -> tuple[bool, str]:
    import regex

    for pattern in patterns:
        try:
            found = regex.search(pattern, text, timeout=REGEX_SECONDS)
        except TimeoutError:
            return False, (
                f"the regex {pattern!r} ran over {REGEX_SECONDS:g} s on this reply "
                "(catastrophic backtracking?): simplify it"
            )
        if not found:
            return False, f"no match for {pattern!r}"
    return True, f"matches {', '.join(map(repr, patterns))}"


def _json(text: str, schema: Any) -> tuple[bool, str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return False, f"not JSON ({e.msg} at character {e.pos})"
    if schema is None:
        return True, "valid JSON"
    from jsonschema.validators import validator_for

    schema = _schema(schema, "")
    error = next(iter(validator_for(schema)(schema).iter_errors(value)), None)
    if error is not None:
        path = "/".join(map(str, error.absolute_path)) or "the top"
        return False, f"JSON, but at {path}: {error.message}"
    return True, "JSON matching the schema"


def _schema(value: Any, at: str) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise InvalidAssertion(f"The JSON schema is not JSON: {e.msg}{at}.") from None
    if not isinstance(value, dict):
        raise InvalidAssertion(f"A JSON schema is an object; found {value!r}{at}.")
    return value


def _texts(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value if str(v) != ""]
    return [str(value)] if str(value) != "" else []


def _holds(text: str, value: str, fold: bool) -> bool:
    return value.casefold() in text.casefold() if fold else value in text


def _limit(a: Assertion) -> float:
    return float(a.value) if a.value is not None else float(a.threshold)


def _number(value: Any, kind: str, at: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidAssertion(f"{kind} needs a number; found {value!r}{at}.") from None


def _short(text: str, chars: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= chars else text[: chars - 1] + "…"
