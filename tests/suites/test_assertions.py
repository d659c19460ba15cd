"""The classifier assertion: one of devmode's own classifiers reads a reply (the session's tiny
sentiment model, promoted), in devmode's form and promptfoo's, and refused clearly before a run
when its model or class cannot be used."""

import json

import pytest

from devmode.db import open_db
from devmode.models import references
from devmode.suites import runner, store
from devmode.suites.assertions import Assertion, InvalidAssertion
from devmode.suites.suite import InvalidSuite, Suite
from tests.conftest import run_cli
from tests.net_support import LocalServer, chat_reply

REPLY = "profit soared strongly"


@pytest.fixture
def endpoint():
    s = LocalServer()
    s.routes["/v1/chat/completions"] = chat_reply(REPLY)
    yield s
    s.close()


def reading(db_path, text=REPLY) -> tuple[str, dict]:
    """The promoted model's own label and probabilities for ``text``."""
    with open_db(db_path) as db:
        chosen = references.resolve(db, "active-sentiment")
    scores = references.load(chosen).score([text])
    return scores.labels[0], dict(
        zip(scores.label_names, scores.probabilities[0].tolist(), strict=True)
    )


def suite_with(endpoint, *checks) -> Suite:
    return Suite.from_dict(
        {
            "name": "client-replies",
            "backend": {"kind": "endpoint", "base_url": endpoint.url("/v1"), "model": "fixed"},
            "prompts": ["Write to the client about the quarter."],
            "assert": list(checks),
        }
    )


def test_a_reply_is_read_by_the_active_model_as_the_playground_reads_it(news_copy, endpoint):
    label, probabilities = reading(news_copy)
    other = next(lab for lab in probabilities if lab != label)
    suite = suite_with(
        endpoint,
        {"type": "classifier", "model": "active-sentiment", "value": label},
        {"type": "not-classifier", "model": "active-sentiment", "value": other, "threshold": 0.5},
        {"type": "classifier", "provider": "devmode:active-sentiment", "value": label,
         "threshold": round(probabilities[label] - 0.01, 4)},
        {"type": "classifier", "model": "active-sentiment", "value": other},
    )  # fmt: skip
    with open_db(news_copy) as db:
        runner.check_classifiers(db, suite)
        run = store.create_run(db, suite)
    runner.execute_run(news_copy, run.id)
    with open_db(news_copy) as db:
        (row,) = store.results(db, run.id)
    outcomes = [c["passed"] for c in row["checks"]]
    assert outcomes == [True, True, True, False]
    assert row["checks"][0]["reason"] == (
        f"active-sentiment reads {label} (P({label}) {probabilities[label]:.2f})"
    )
    assert row["checks"][3]["reason"].startswith(f"active-sentiment reads {label}")


@pytest.mark.parametrize(
    "values,message",
    [
        ({"type": "classifier", "value": "negative"}, "A classifier needs model:"),
        ({"type": "classifier", "model": "active-sentiment"}, "needs a value: the class"),
        ({"type": "classifier", "provider": "openai:gpt-4o", "value": "negative"},
         "found 'openai:gpt-4o', which devmode does not run"),
        ({"type": "classifier", "model": "active-sentiment", "value": "negative", "threshold": 1.5},
         "threshold is a probability above 0 and at most 1"),
        ({"type": "classifier", "model": "newest", "value": "negative"}, "newest"),
        ({"type": "classifier", "model": "base", "provider": "devmode:3", "value": "negative"},
         "not both; found model 'base' and provider 'devmode:3'"),
        ({"type": "icontains", "model": "base", "value": "negative"},
         "model names the classifier of a classifier assertion; found it on icontains"),
    ],
)  # fmt: skip
def test_a_classifier_assertion_that_cannot_work_is_refused_when_read(values, message):
    with pytest.raises(InvalidAssertion, match=message):
        Assertion.from_dict(values)


@pytest.mark.parametrize(
    "model,value,message",
    [
        ("999", "negative", "No run with id 999"),
        ("active-topic", "negative", "No model is active for topic"),
        ("active-sentiment", "bullish", "a class it does not have; its classes are"),
    ],
)
def test_a_model_or_class_that_cannot_be_used_stops_the_run_before_it_starts(
    news_copy, endpoint, tmp_path, model, value, message
):
    suite = suite_with(endpoint, {"type": "classifier", "model": model, "value": value})
    with open_db(news_copy) as db, pytest.raises(InvalidSuite, match=message):
        runner.check_classifiers(db, suite)
    path = tmp_path / "suite.yaml"
    path.write_text(json.dumps(suite.to_dict()))  # JSON is YAML
    out = run_cli(news_copy, "bench", "run", path)
    assert out.exit_code == 2 and message.split(";")[0] in out.output, out.output
    with open_db(news_copy) as db:
        assert db["devmode_suite_runs"].count == 0  # nothing stored half-way


def test_promptfoos_classifier_is_read_when_its_provider_is_devmode():
    from devmode.suites.files import parse_suite

    suite = parse_suite(
        "prompts: [hello]\nproviders: [embedded]\ntests:\n  - assert:\n"
        "      - {type: classifier, provider: 'devmode:active-sentiment', value: negative,"
        " threshold: 0.5}\n"
    )
    (check,) = suite.cases[0].assertions
    assert (check.model, check.value, check.threshold) == ("active-sentiment", "negative", 0.5)
    assert check.to_dict()["model"] == "active-sentiment"  # devmode's form when written out
    with pytest.raises(InvalidSuite, match="provider is devmode:REF"):
        parse_suite(
            "prompts: [hello]\ntests:\n  - assert:\n"
            "      - {type: classifier, provider: 'huggingface:text-classification:x', value: a}\n"
        )
