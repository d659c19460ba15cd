"""The Suites page's tables: a suite read into them and built back from them keeps what the
tables cannot show (case ids, earlier turns, a case's own assertions, the significance)."""

import textwrap

import pytest

from devmode.suites import tables
from devmode.suites.files import parse_suite
from devmode.suites.suite import InvalidSuite

MULTI_TURN = textwrap.dedent(
    """\
    name: follow-ups
    significance: 0.01
    repeat: 5
    min_pass_rate: 0.6
    prompts: ["And what of {ticker}'s yield?"]
    cases:
      - id: after-bonds
        vars: {ticker: TLT}
        turns:
          - {role: user, content: Tell me about the 10-year note.}
          - {role: assistant, content: It is a Treasury bond of ten years.}
        assert: [{type: not-icontains, value: "10-year"}]
      - id: plain
        vars: {ticker: IEF}
    variants: [{name: default}]
    assert: [{type: icontains, value: yield}]
    """
)


def rebuilt(suite, start=None):
    """The suite as the page builds it from the tables ``suite_tables`` filled."""
    start = start or tables.suite_tables(suite)
    return tables.suite_from_tables(
        start["name"],
        start["prompts"],
        start["cases"],
        start["variants"],
        start["checks"],
        suite.settings,
        repeat=start["repeat"],
        min_pass_rate=start["min_pass_rate"],
        significance=start["significance"],
        case_extras=start["case_extras"],
    )


def test_case_ids_turns_and_significance_survive_the_tables():
    suite = parse_suite(MULTI_TURN)
    start = tables.suite_tables(suite)
    assert [row[tables.CASE_ID] for row in start["cases"]] == ["after-bonds", "plain"]
    assert tables.form_values(start)["significance"] == 0.01
    back = rebuilt(suite, start)
    assert [c.key for c in back.cells()] == [c.key for c in suite.cells()]
    assert back.cases == suite.cases  # turns and the case's own assertion kept by its id
    assert back.significance == 0.01 and back.repeat == 5 and back.min_pass_rate == 0.6
    assert tables.extras_text(start["case_extras"]) == (
        "Case after-bonds holds 2 earlier turns and 1 assertion of its own: kept as they are "
        "while the case keeps its id; edit them in the suite's YAML and import it again."
    )


def test_a_renamed_case_is_refused_rather_than_losing_its_turns_and_new_rows_get_free_ids():
    suite = parse_suite(MULTI_TURN)
    start = tables.suite_tables(suite)
    renamed = {**start, "cases": [{**start["cases"][0], tables.CASE_ID: "other"}]}
    with pytest.raises(InvalidSuite, match="Case after-bonds holds 2 earlier turns and 1 "
                       "assertion of its own, but no row of the cases' table has that id now"):  # fmt: skip
        rebuilt(suite, renamed)
    added = {**start, "cases": [*start["cases"], {tables.CASE_ID: "", "ticker": "SHY"}]}
    added["cases"][1] = {tables.CASE_ID: "c1", "ticker": "IEF"}
    assert [c.id for c in rebuilt(suite, added).cases] == ["after-bonds", "c1", "c2"]


def test_values_only_an_assertion_uses_are_kept():
    suite = parse_suite(
        textwrap.dedent(
            """\
            prompts: ["Name {ticker}'s issuer."]
            cases: [{vars: {ticker: TLT, expected: Treasury}}]
            assert: [{type: icontains, value: "{expected}"}]
            """
        )
    )
    back = rebuilt(suite)
    assert back.cases[0].vars == {"ticker": "TLT", "expected": "Treasury"}


def test_cases_without_variables_keep_their_turns():
    suite = parse_suite(
        textwrap.dedent(
            """\
            name: follow-up
            prompts: ["And its yield?"]
            cases:
              - id: after-bonds
                turns: [{role: user, content: Tell me about the 10-year note.}]
            """
        )
    )
    start = tables.suite_tables(suite)
    assert start["cases"] == []  # no variable: the page shows no cases' table
    back = rebuilt(suite, start)
    assert [c.id for c in back.cases] == ["after-bonds"]
    assert back.cases[0].turns == suite.cases[0].turns


def test_a_new_suite_on_the_page_names_its_cases_c1_c2():
    start = tables.starter_tables()
    assert start["case_extras"] == {} and start["significance"] == 0.05
    suite = parse_suite("prompts: [hi]\n")
    back = tables.suite_from_tables(
        "starter",
        start["prompts"],
        start["cases"],
        start["variants"],
        start["checks"],
        suite.settings,
    )
    assert [c.id for c in back.cases] == ["c1", "c2"]
