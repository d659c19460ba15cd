"""Suite files and assertions: devmode's YAML round-trips, promptfoo's subset reads unchanged,
each check passes and fails for the right reason, and bad files are refused naming the line."""

import textwrap

import pytest

from devmode.suites import assertions
from devmode.suites.assertions import Assertion, InvalidAssertion, evaluate
from devmode.suites.files import parse_suite, read_suite, suite_yaml
from devmode.suites.suite import InvalidSuite, Suite

SUITE = textwrap.dedent(
    """\
    name: bond-basics
    description: Short answers about bonds
    system_prompt: Be brief.
    limits: {max_tokens: 48, temperature: 0}
    repeat: 2
    prompts:
      - What is a {thing}?
      - id: risk
        text: Name one risk of holding {{ thing }}s.
        assert: [{type: icontains, value: risk}]
    cases:
      - vars: {thing: bond}
      - id: equity
        vars: {thing: stock}
        assert: [{type: completion-tokens, value: 40}]
    variants:
      - {name: short, max_tokens: 20}
      - {name: one sentence, stop: ["."], banned: [guarantee]}
      - name: served
        temperature: 0.7
        backend: {kind: endpoint, base_url: "http://127.0.0.1:8000/v1", model: smollm2}
    assert:
      - {type: not-icontains, value: guarantee}
      - {type: stopped-by, value: stop_sequence, which: "."}
    """
)


def test_a_suite_reads_fills_its_variables_and_round_trips():
    suite = parse_suite(SUITE)
    cells = list(suite.cells())
    assert suite.size == 2 * 2 * 3 * 2 and len(cells) == 12
    first = cells[0]
    assert first.key == "p1/c1/short" and first.text == "What is a bond?"
    risk = [c for c in cells if c.key == "risk/equity/served"][0]
    assert risk.text == "Name one risk of holding stocks."  # promptfoo's {{ }} fills too
    assert risk.variant.limits.temperature == 0.7
    assert risk.variant.backend.kind == "endpoint"
    assert [a.name for a in suite.assertions_for(risk)] == [
        "not-icontains",
        "stopped-by",
        "icontains",
        "completion-tokens",
    ]
    short = cells[0].variant
    assert short.limits.max_tokens == 20 and short.limits.temperature == 0  # suite's limits
    assert suite.settings.system_prompt == "Be brief."
    again = parse_suite(suite_yaml(suite))
    assert again == suite and parse_suite(suite_yaml(again)) == suite
    assert Suite.from_dict(suite.to_dict()) == suite


def test_a_promptfoo_config_runs_unchanged(tmp_path):
    (tmp_path / "prompt.txt").write_text("Summarise {{topic}} in one line.")
    config = tmp_path / "promptfooconfig.yaml"
    config.write_text(
        textwrap.dedent(
            """\
            description: Market summaries
            prompts:
              - file://prompt.txt
              - "What moves {{topic}}?"
            providers:
              - id: openai:chat:smollm2
                label: local
                config:
                  apiBaseUrl: http://127.0.0.1:8000/v1
                  temperature: 0.2
                  max_tokens: 32
                  apiKeyEnvar: LOCAL_KEY
              - embedded
            defaultTest:
              vars: {desk: rates}
              assert:
                - type: not-icontains
                  value: guaranteed
            tests:
              - description: bonds
                vars: {topic: bond yields}
                assert:
                  - type: icontains-any
                    value: [yield, rate]
                  - type: finish-reason
                    value: stop
                  - type: latency
                    threshold: 5000
              - vars: {topic: oil}
            evaluateOptions:
              repeat: 3
            """
        )
    )
    suite = read_suite(config)
    assert suite.name == "promptfooconfig" and suite.description == "Market summaries"
    assert suite.prompts[0].text == "Summarise {{topic}} in one line." and suite.repeat == 3
    local, embedded = suite.variants
    assert local.name == "local" and local.backend.base_url == "http://127.0.0.1:8000/v1"
    assert local.backend.model == "smollm2" and local.backend.api_key_name == "LOCAL_KEY"
    assert local.limits.max_tokens == 32 and local.limits.temperature == 0.2
    assert embedded.backend.kind == "embedded"
    assert [c.id for c in suite.cases] == ["bonds", "c2"]
    assert suite.cases[0].vars == {"desk": "rates", "topic": "bond yields"}
    assert [a.name for a in suite.cases[0].assertions] == [
        "icontains-any",
        "finish-reason",
        "latency",
    ]
    assert [c.text for c in suite.cells()][0] == "Summarise bond yields in one line."
    assert parse_suite(suite_yaml(suite)) == suite  # and it exports as devmode's format


@pytest.mark.parametrize(
    "text,phrases",
    [
        ("just: text\n", ["is not a suite", "found keys just"]),
        ("- a list\n", ["is not a suite", "found list"]),
        ("prompts: [unclosed\n", ["not valid YAML", "line 2"]),
        (
            "prompts: [hi]\nassert:\n  - {type: contains, value: x}\n  - type: sounds-like\n    value: x\n",
            ["Unknown assertion type 'sounds-like'", "assert[1], line 4"],
        ),
        (
            "prompts:\n  - id: a\n    text: hi\n    assert:\n      - {type: regex, value: '(unclosed'}\n",
            ["regex '(unclosed' does not compile", "prompts[0].assert[0], line 5"],
        ),
        (
            "prompts: [hi]\nassert:\n  - {type: is-json, value: {type: 12}}\n",
            ["JSON schema of is-json is not valid", "line 3"],
        ),
        (
            "prompts: ['What about {company}?']\ncases:\n  - vars: {ticker: AAPL}\n",
            ["{company}", "case c1", "has ticker"],
        ),
        (
            "prompts: [hi]\nvariants:\n  - {name: a}\n  - {name: a, max_tokens: 5}\n",
            ["Each variant name must be different", "a appears", "line 3"],
        ),
        (
            "prompts: [hi]\nvariants:\n  - {name: a, max_tokens: -5}\n",
            ["max_tokens", "variants[0], line 3"],
        ),
        ("prompts: [hi]\nvariants:\n  - {name: a, colour: red}\n", ["Unknown field colour"]),
        (
            "prompts: [hi]\nproviders: [anthropic:claude]\n",
            ["Provider 'anthropic:claude' is not one devmode runs", "line 2"],
        ),
        (
            "prompts: [hi]\nassert:\n  - {type: stopped-by, value: tired}\n",
            ["stopped-by needs one of"],
        ),
        (
            "prompts: [hi]\nrepeat: 0\n",
            ["repeat must be from 1 to 100", "found 0 (repeat, line 2)"],
        ),
        ("prompts: [hi]\nmin_pass_rate: 2\n", ["min_pass_rate must be above 0 and at most 1"]),
        ("? [a, b]\n: x\nprompts: [hi]\n", ["a key at line 1 is a list or a mapping"]),
        ("prompts: [hi]\nx: " + "[" * 40 + "]" * 40 + "\n", ["more than 32 levels deep"]),
    ],
)
def test_a_bad_suite_is_refused_naming_what_and_where(text, phrases):
    with pytest.raises(InvalidSuite) as caught:
        parse_suite(text, source="mine.yaml")
    message = str(caught.value)
    assert message.startswith("mine.yaml")
    for phrase in phrases:
        assert phrase in message, message


def test_a_missing_or_binary_file_is_refused(tmp_path):
    with pytest.raises(InvalidSuite, match="No suite file"):
        read_suite(tmp_path / "nope.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00prompts")
    with pytest.raises(InvalidSuite, match="not a UTF-8 text file"):
        read_suite(tmp_path / "bin.yaml")


REPLY = {
    "text": '{"ticker": "AAPL", "view": "neutral"}',
    "stopped_by": "stop_sequence",
    "which": ".",
    "completion_tokens": 12,
    "first_token_s": 0.15,
    "total_s": 0.9,
}


def check(kind, value=None, reply=REPLY, **extra):
    return evaluate(Assertion.from_dict({"type": kind, "value": value, **extra}), reply)


@pytest.mark.parametrize(
    "kind,value,extra,passed,reason",
    [
        ("contains", "AAPL", {}, True, "holds 'AAPL'"),
        ("contains", ["AAPL", "MSFT"], {}, False, "missing 'MSFT'"),
        ("icontains", "aapl", {}, True, "holds"),
        ("not-icontains", "aapl", {}, False, "not: holds"),
        ("contains-any", ["MSFT", "view"], {}, True, "holds 'view'"),
        ("icontains-all", ["TICKER", "VIEW"], {}, True, "holds"),
        ("equals", '{"ticker": "AAPL", "view": "neutral"}', {}, True, "equal"),
        ("starts-with", "{", {}, True, "starts with"),
        ("regex", r'"view":\s*"(neutral|bullish)"', {}, True, "matches"),
        ("regex", r"\d{4}", {}, False, "no match"),
        ("is-json", None, {}, True, "valid JSON"),
        (
            "is-json",
            {"type": "object", "required": ["ticker", "price"]},
            {},
            False,
            "'price' is a required property",
        ),
        ("stopped-by", "stop_sequence", {"which": "."}, True, "ended by stop_sequence '.'"),
        ("stopped-by", "stop_sequence", {"which": "\n"}, False, "not '\\n'"),
        ("stopped-by", "max_tokens", {}, False, "ended by stop_sequence"),
        ("finish-reason", "stop", {}, True, "stop_sequence"),
        ("completion-tokens", 10, {}, False, "12 tokens (at most 10)"),
        ("latency", None, {"threshold": 1000}, True, "900 ms (at most 1,000)"),
        ("first-token", 100, {}, False, "150 ms (at most 100)"),
    ],
)
def test_each_assertion_says_pass_or_fail_and_why(kind, value, extra, passed, reason):
    outcome = check(kind, value, **extra)
    assert outcome.passed is passed and reason in outcome.reason, outcome


def test_a_catastrophic_regex_fails_its_cell_in_about_a_second():
    import time

    start = time.perf_counter()
    outcome = check("regex", "^(a|aa)+$", {**REPLY, "text": "a" * 60 + "b"})
    assert not outcome.passed and "catastrophic backtracking" in outcome.reason
    assert time.perf_counter() - start < assertions.REGEX_SECONDS * 5


def test_similarity_and_grading_need_their_helpers():
    assert "no sentence encoder" in check("similar", "a bond is a loan").reason
    outcome = evaluate(
        Assertion.from_dict({"type": "similar", "value": ["x", "y"], "threshold": 0.5}),
        REPLY,
        similarity=lambda text, expected: [0.2, 0.6],
    )
    assert outcome.passed and "similarity 0.60 (at least 0.50)" in outcome.reason
    assert "no grading endpoint" in check("llm-rubric", "is polite").reason


@pytest.mark.parametrize(
    "values,phrase",
    [
        ({"type": "contains"}, "contains needs a value"),
        ({"type": "latency"}, "latency needs a number"),
        ({"type": "latency", "value": "soon"}, "needs a number; found 'soon'"),
        ({"type": "contains", "value": "x", "colour": 1}, "found ['colour']"),
        ({"value": "x"}, "Expected an assertion with a type"),
        ({"type": "finish-reason", "value": "tired"}, "stop or length"),
    ],
)
def test_an_assertion_that_cannot_work_is_refused(values, phrase):
    with pytest.raises(InvalidAssertion, match=None) as caught:
        Assertion.from_dict(values, "here")
    assert phrase in str(caught.value) and "(here)" in str(caught.value)


def test_the_suite_size_bound_counts_bytes_not_characters():
    text = "prompts: [hi]\n# " + "€" * 2_000_000 + "\n"  # 2 M characters, 6 MB of UTF-8
    with pytest.raises(InvalidSuite, match="a suite file may be at most 5 MB"):
        parse_suite(text, source="wide.yaml")


def yaml_blocks(path) -> list[str]:
    """The ```yaml blocks of a markdown file."""
    import re

    return re.findall(r"```ya?ml\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def test_every_suite_the_docs_show_reads():
    from tests.conftest import ROOT

    shown = [
        (path.name, block)
        for path in (ROOT / "README.md", ROOT / "docs" / "suites.md")
        for block in yaml_blocks(path)
        if "prompts:" in block
    ]
    assert len(shown) >= 3
    for name, block in shown:
        try:
            parse_suite(block, source=name)
        except InvalidSuite as e:
            raise AssertionError(f"a suite in {name} does not read: {e}\n{block}") from None
