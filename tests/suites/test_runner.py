"""Suite runs: every reply checked and stored as it comes, an endpoint that fails half-way,
cancel and resume in a worker process, regressions between runs, the CLI's exit codes, and the
embedded model beside devmode's own endpoint. Real SQLite, real HTTP servers on 127.0.0.1, the
real openai SDK."""

import http.server
import json
import textwrap
import threading
import time

import pytest
from click.testing import CliRunner

from devmode import jobs
from devmode.chat.backends import OpenAIBackend
from devmode.cli import cli
from devmode.db import open_db
from devmode.suites import reports, runner, store
from devmode.suites.files import parse_suite
from devmode.suites.files import suite_yaml as yaml_of
from devmode.suites.suite import InvalidSuite
from tests.conftest import run_cli, wait_for


class EchoChat(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint whose reply is 'You asked: PROMPT. Done', a word per
    chunk, cut at max_tokens words (finish_reason length); after ``fail_after`` requests it
    answers 500; ``delay`` seconds before each answer."""

    def log_message(self, *args):
        pass

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        server.requests.append(body)
        time.sleep(server.delay)
        if server.fail_after is not None and len(server.requests) > server.fail_after:
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"error": {"message": "the GPU fell over"}}).encode())
            return
        prompt = body["messages"][-1]["content"]
        words = f"You asked: {prompt} Done".split(" ")
        if prompt.startswith("You grade a reply"):  # a grading request (llm-rubric)
            reply = prompt.rsplit("Reply:", 1)[1]
            verdict = "PASS it names a risk" if "risk" in reply else "FAIL no risk is named"
            words = verdict.split(" ")
        cut = words[: body.get("max_tokens") or len(words)]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for i, word in enumerate(cut):
            self._send({"delta": {"content": word + (" " if i < len(cut) - 1 else "")}})
        finish = "length" if len(cut) < len(words) else "stop"
        self._send({"delta": {}, "finish_reason": finish})
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(cut)}
        usage["total_tokens"] = sum(usage.values())
        chunk = {"id": "1", "object": "chat.completion.chunk", "created": 0, "model": "echo"}
        self.wfile.write(
            f"data: {json.dumps({**chunk, 'choices': [], 'usage': usage})}\n\n".encode()
        )
        self.wfile.write(b"data: [DONE]\n\n")

    def _send(self, choice):
        chunk = {"id": "1", "object": "chat.completion.chunk", "created": 0, "model": "echo"}
        chunk["choices"] = [{"index": 0, "finish_reason": None, **choice}]
        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())


@pytest.fixture
def echo():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoChat)
    server.requests, server.fail_after, server.delay = [], None, 0.0
    # a short poll interval: shutdown() waits for it, and every suite test has this server
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    server.base_url = f"http://127.0.0.1:{server.server_port}/v1"
    yield server
    server.shutdown()


def suite_yaml(text: str):
    """A suite from YAML written indented in a test."""
    return parse_suite(textwrap.dedent(text))


def echo_suite(echo, max_tokens=40, name="echo-suite"):
    return suite_yaml(
        f"""\
            name: {name}
            limits: {{temperature: 0, max_tokens: {max_tokens}}}
            backend: {{kind: endpoint, base_url: "{echo.base_url}", model: echo}}
            prompts:
              - What moves {{ticker}}. Be brief?
              - id: yields
                text: Are {{ticker}} yields up.
                assert: [{{type: stopped-by, value: stop_sequence, which: "."}}]
            cases:
              - vars: {{ticker: AAPL}}
              - vars: {{ticker: TLT}}
            variants:
              - {{name: plain}}
              - {{name: first sentence, stop: ["."]}}
            assert:
              - {{type: icontains, value: "you asked"}}
              - {{type: not-contains, value: Done}}
            """
    )


def run_now(db_path, suite, **kwargs):
    with open_db(db_path) as db:
        run = store.create_run(db, suite)
    return runner.execute_run(db_path, run.id, **kwargs)


def test_a_run_checks_every_reply_and_stores_it(db_path, echo):
    suite = echo_suite(echo)
    seen = []
    run = run_now(db_path, suite, on_result=lambda row, done, total: seen.append((done, total)))
    assert run.status == "completed" and run.done == run.total == 8
    assert seen == [(i, 8) for i in range(1, 9)]
    with open_db(db_path) as db:
        report = reports.run_report(db, run.id)
        assert store.suite_names(db) == ["echo-suite"]
    cells = {c["cell"]: c for c in report["cells"]}
    plain = cells["p1/c1/plain"]["replies"][0]
    assert (
        plain["text"] == "You asked: What moves AAPL. Be brief? Done" and plain["outcome"] == "fail"
    )
    assert [c["passed"] for c in plain["checks"]] == [True, False]
    assert "not: holds 'Done'" in plain["checks"][1]["reason"]
    # the stop sequence ends the reply before "Done": every check passes
    cut = cells["yields/c2/first sentence"]["replies"][0]
    assert cut["text"] == "You asked: Are TLT yields up" and cut["which"] == "."
    assert cut["outcome"] == "pass" and cells["yields/c2/first sentence"]["passed"]
    assert "ended by end" in cells["yields/c2/plain"]["replies"][0]["checks"][2]["reason"]
    assert run.summary == {
        "cells": 8,
        "passed": 4,
        "failed": 4,
        "replies": 8,
        "errors": 0,
        "error_cells": [],
    }
    assert reports.grid(report)[0] == {
        "prompt": "p1",
        "case": "c1",
        "plain": "fail",
        "first sentence": "pass",
    }
    assert [v["pass_rate"] for v in report["variants"]] == [0.0, 1.0]
    # each request sent the suite's settings and the variant's limits
    assert echo.requests[1]["stop"] == ["."] and echo.requests[0]["max_tokens"] == 40


def test_an_endpoint_failing_half_way_keeps_the_replies_and_resume_asks_again(db_path, echo):
    echo.fail_after = 3
    run = run_now(db_path, echo_suite(echo))
    assert run.status == "failed" and run.done == 3
    assert "5 of 8 replies never came" in run.error and "cell p1/c2/first sentence" in run.error
    assert "the GPU fell over" in run.error and "resume" in run.error
    with open_db(db_path) as db:
        kept = {r["cell"]: r["id"] for r in store.results(db, run.id) if r["outcome"] != "error"}
        report = reports.run_report(db, run.id)
    assert len(kept) == 3 and report["summary"]["errors"] == 5
    assert reports.grid(report)[1]["first sentence"] == "error"
    echo.fail_after = None
    asked = len(echo.requests)
    resumed = runner.execute_run(db_path, run.id)
    assert resumed.status == "completed" and resumed.done == 8 and resumed.error is None
    assert len(echo.requests) - asked == 5  # only the replies that never came
    with open_db(db_path) as db:
        after = store.results(db, run.id)
    assert {r["cell"]: r["id"] for r in after if r["cell"] in kept} == kept
    assert [r["outcome"] for r in after].count("error") == 0 and len(after) == 8


def test_a_run_in_a_worker_is_cancelled_then_resumed_where_it_stopped(db_path, echo):
    echo.delay = 0.4
    run = runner.start_run(db_path, echo_suite(echo))

    def stored():
        with open_db(db_path) as db:
            return store.get_run(db, run.id)

    wait_for(lambda: stored().done >= 2, timeout=120, what="two replies")
    with open_db(db_path) as db:
        jobs.request_cancel(db, store.KIND, run.id)
    wait_for(lambda: stored().status == "cancelled", timeout=60, what="the cancel")
    stopped = stored().done
    assert 2 <= stopped < 8
    echo.delay = 0.0
    runner.resume_run(db_path, run.id)
    wait_for(lambda: stored().status == "completed", timeout=120, what="the resumed run")
    assert stored().done == 8 and len(echo.requests) == 8  # nothing asked twice


def test_regressions_between_runs_and_the_cli_fails_a_ci_step(db_path, echo, tmp_path):
    suite_file = tmp_path / "suite.yaml"
    from devmode.suites.files import suite_yaml

    suite_file.write_text(suite_yaml(echo_suite(echo)))
    runner_ = CliRunner()
    first = runner_.invoke(cli, ["--db", str(db_path), "bench", "run", str(suite_file), "--json"])
    assert first.exit_code == 1  # four cells fail: the report says which
    report = json.loads(first.stdout)
    assert report["format"] == "devmode-suite-report" and report["summary"]["passed"] == 4
    assert "FAIL p1/c1/plain: not-contains: not: holds 'Done'" in first.stderr
    baseline = tmp_path / "baseline.json"
    baseline.write_text(first.stdout)
    # a limit changed: max_tokens 3 cuts every reply before the stop sequence (and "Done")
    suite_file.write_text(suite_yaml(echo_suite(echo, max_tokens=3)))
    fresh = tmp_path / "fresh.db"  # a CI job with a new database compares with the file
    second = runner_.invoke(
        cli, ["--db", str(fresh), "bench", "run", str(suite_file), "--baseline", str(baseline)]
    )
    assert second.exit_code == 1
    assert (
        "REGRESSION yields/c1/first sentence: passed, then failed (one repeat each" in second.stderr
    )
    assert "2 regressions (a significant fall, at 0.05), 2 fixes (fail → pass)" in second.stdout
    # in the first database: compare two stored runs
    third = runner_.invoke(cli, ["--db", str(db_path), "bench", "run", str(suite_file)])
    assert third.exit_code == 1
    compared = runner_.invoke(cli, ["--db", str(db_path), "bench", "compare", "1", "2", "--json"])
    diff = json.loads(compared.stdout)
    assert {r["cell"] for r in diff["regressions"]} == {
        "yields/c1/first sentence",
        "yields/c2/first sentence",
    }
    assert {r["cell"] for r in diff["fixes"]} == {"p1/c1/plain", "p1/c2/plain"}
    assert "ended by max_tokens" in diff["regressions"][0]["why"]
    line = diff["variants"][1]
    assert line["pass_rate_before"] == 1.0 and line["pass_rate_after"] == 0.5
    assert line["median_completion_tokens_after"] == 3
    with open_db(db_path) as db:
        html = reports.as_html(
            reports.run_report(db, 2), reports.compare(report, reports.run_report(db, 2))
        )
        csv_text = reports.as_csv(reports.run_report(db, 2))
    assert "<script" not in html and "Regressions (a significant fall)" in html
    assert "yields/c1/first sentence" in html
    assert len(csv_text.strip().splitlines()) == 1 + 8
    # a suite that passes exits 0
    passing = tmp_path / "passing.yaml"
    passing.write_text(
        f"prompts: [hi]\nbackend: {{kind: endpoint, base_url: '{echo.base_url}', model: e}}\n"
        "assert: [{type: starts-with, value: You asked}]\n"
    )
    ok = runner_.invoke(cli, ["--db", str(db_path), "bench", "run", str(passing)])
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize(
    "arguments,phrase",
    [
        (["bench", "run", "missing.yaml"], "No suite file"),
        (["bench", "run", "SUITE", "--baseline", "nope.json"], "neither a stored suite run"),
        (["bench", "run", "nosuch"], "No suite named 'nosuch'"),
    ],
)
def test_a_suite_that_cannot_run_exits_2_with_a_message(db_path, tmp_path, arguments, phrase):
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text("prompts: [hi]\n")
    arguments = [str(suite_file) if a == "SUITE" else a for a in arguments]
    result = CliRunner().invoke(cli, ["--db", str(db_path), *arguments])
    assert result.exit_code == 2 and phrase in result.output and "Traceback" not in result.output


def test_suites_import_export_and_list_from_the_cli(db_path, tmp_path, echo):
    from devmode.suites.files import read_suite, suite_yaml

    source = tmp_path / "in.yaml"
    source.write_text(suite_yaml(echo_suite(echo, name="kept")))
    runner_ = CliRunner()
    assert (
        runner_.invoke(cli, ["--db", str(db_path), "bench", "import", str(source)]).exit_code == 0
    )
    assert "kept" in runner_.invoke(cli, ["--db", str(db_path), "bench", "list"]).output
    out = tmp_path / "out.yaml"
    runner_.invoke(cli, ["--db", str(db_path), "bench", "export", "kept", "-o", str(out)])
    assert read_suite(out) == read_suite(source)


def test_the_embedded_model_and_its_served_endpoint_side_by_side(db_path, embedded, chat_server):
    suite = suite_yaml(
        f"""\
            name: side-by-side
            limits: {{temperature: 0, max_tokens: 8}}
            prompts: ["What is a bond?"]
            variants:
              - {{name: embedded}}
              - name: served
                backend: {{kind: endpoint, base_url: "{chat_server.base_url}", model: smollm2}}
            assert:
              - {{type: stopped-by, value: max_tokens}}
              - {{type: completion-tokens, value: 8}}
              - {{type: similar, value: "A bond is a loan to a company or government.", threshold: 0.3}}
            """
    )

    def backends(spec):
        return embedded if spec.kind == "embedded" else OpenAIBackend(spec.base_url, spec.model)

    run = run_now(db_path, suite, backends=backends)
    with open_db(db_path) as db:
        report = reports.run_report(db, run.id)
    here, served = (c["replies"][0] for c in report["cells"])
    assert here["text"] and here["text"] == served["text"]  # greedy: the same model, same words
    assert here["completion_tokens"] == served["completion_tokens"] == 8
    assert run.summary["passed"] == 2, report["cells"]
    assert "similarity" in here["checks"][2]["reason"]


def test_a_grading_endpoint_judges_llm_rubric_and_variables_fill_assertions(db_path, echo):
    suite = suite_yaml(
        f"""\
            name: graded
            backend: {{kind: endpoint, base_url: "{echo.base_url}", model: echo}}
            grader: {{base_url: "{echo.base_url}", model: echo}}
            prompts: ["Name one risk of {{asset}}.", "Say hello about {{asset}}."]
            cases: [{{vars: {{asset: bonds}}}}]
            assert:
              - {{type: llm-rubric, value: The reply names a risk.}}
              - {{type: icontains, value: "{{{{asset}}}}"}}
            """
    )
    run = run_now(db_path, suite)
    with open_db(db_path) as db:
        cells = reports.run_report(db, run.id)["cells"]
    risk, hello = (c["replies"][0]["checks"] for c in cells)
    assert risk[0]["passed"] and "grader: PASS it names a risk" in risk[0]["reason"]
    assert not hello[0]["passed"] and "FAIL no risk is named" in hello[0]["reason"]
    assert risk[1]["assertion"]["value"] == "bonds" and risk[1]["passed"]


def test_a_prompt_a_variant_refuses_says_why(db_path, echo):
    suite = suite_yaml(
        f"""\
            name: refusals
            backend: {{kind: endpoint, base_url: "{echo.base_url}", model: echo}}
            prompts: ["{{topic}}", "Is a guarantee worth anything?"]
            cases: [{{vars: {{topic: ""}}}}]
            variants: [{{name: strict, banned: [guarantee]}}]
            assert: [{{type: stopped-by, value: banned_word}}]
            """
    )
    run = run_now(db_path, suite)
    with open_db(db_path) as db:
        empty, banned = (r for r in store.results(db, run.id))
    assert empty["stopped_by"] == "refused" and "The message is empty" in empty["detail"]
    assert empty["outcome"] == "fail" and "ended by refused" in empty["checks"][0]["reason"]
    assert banned["stopped_by"] == "banned_word" and "banned word 'guarantee'" in banned["detail"]
    assert banned["outcome"] == "pass" and echo.requests == []  # neither was sent


# ----------------------------------------------------------------------------------------------
# Issue 26: a suite file from a pull request, run in CI, reads nothing outside its folder and
# cannot hang or crash the run. Each case exits 2 with its message before anything runs.


def _promptfoo(prompt: str) -> str:
    return (
        f"prompts: [{json.dumps(prompt)}]\n"
        "providers:\n  - id: openai:echo\n    config: {apiBaseUrl: 'ECHO'}\n"
    )


def _alias_bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    return "\n".join([*lines, "prompts: [*i]", ""])


def _with(files: dict, suite: str, extra=()):
    """A suite folder holding ``files`` (text, bytes, or ('link', target) / ('fifo',))."""

    def make(folder, echo):
        import os

        for name, content in files.items():
            path = folder / name
            if isinstance(content, tuple) and content[0] == "link":
                path.symlink_to(content[1])
            elif isinstance(content, tuple):
                os.mkfifo(path)
            elif isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        (folder / "suite.yaml").write_text(suite.replace("ECHO", echo.base_url))
        return [
            str(folder / "suite.yaml"),
            *[str(folder / a) if a in files else a for a in extra],
        ]

    return make


def _baseline(body: str):
    return _with({"base.json": body}, "prompts: [hi]\n", extra=["--baseline", "base.json"])


# (case, how the suite is made, a phrase its message must hold)
SUITE_CASES = [
    (
        "file:// up and out",
        _with({}, _promptfoo("file://../../../../etc/passwd")),
        "is outside the suite's folder",
    ),
    (
        "file:// absolute",
        _with({}, _promptfoo("file:///etc/hostname")),
        "is outside the suite's folder",
    ),
    (
        "file:// a link out",
        _with({"p.txt": ("link", "/etc/hostname")}, _promptfoo("file://p.txt")),
        "is outside the suite's folder",
    ),
    (
        "file:// .. after a link",
        _with({"sub": ("link", "/etc")}, _promptfoo("file://sub/../etc/hostname")),
        "is outside the suite's folder",
    ),
    (
        "file:// a device",
        _with({}, _promptfoo("file:///dev/zero")),
        "is outside the suite's folder",
    ),
    (
        "file:// a pipe",
        _with({"p.txt": ("fifo",)}, _promptfoo("file://p.txt")),
        "not a regular file",
    ),
    (
        "file:// too big",
        _with({"p.txt": "x" * 1_100_000}, _promptfoo("file://p.txt")),
        "a prompt file may be at most 1 MB",
    ),
    (
        "suite too big",
        _with({}, "prompts: [hi]\n" + "# padding\n" * 600_000),
        "a suite file may be at most 5 MB",
    ),
    ("alias bomb", _with({}, _alias_bomb()), "over 100,000 values once its YAML aliases"),
    (
        "20,000 levels deep",
        _with({}, "prompts: [hi]\ndeep: " + "[" * 20_000 + "]" * 20_000 + "\n"),
        "nests its values too deeply",
    ),
    (
        "a key twice",
        _with({}, "prompts: [hi]\nrepeat: 1\nprompts: [bye]\n"),
        "the key 'prompts' is given twice in one mapping (lines 1 and 3)",
    ),
    (
        "baseline with a broken body",
        _baseline('{"format": "devmode-suite-report", "suite": "s", "cells": "x"}'),
        "has the report's format but not its fields: cells",
    ),
    (
        "baseline a device",
        _with({}, "prompts: [hi]\n", extra=["--baseline", "/dev/zero"]),
        "is not a regular file",
    ),
    (
        "file:// a hidden file",
        _with({".env": "GITHUB_TOKEN=ghp_x"}, _promptfoo("file://.env")),
        "names a hidden file or folder",
    ),
    (
        "baseline without pass rates",
        _baseline(
            '{"format": "devmode-suite-report", "suite": "s", "variants": [],'
            ' "cells": [{"cell": "a", "passed": true}]}'
        ),
        "cells[0].pass_rate: field required",
    ),
    (
        "baseline with more passes than repeats",
        _baseline(
            '{"format": "devmode-suite-report", "suite": "s", "variants": [], "cells": [{"cell":'
            ' "a", "passed": true, "pass_rate": 1.0, "passes": 6, "repeats": 5}]}'
        ),
        "passes (6) above repeats (5)",
    ),
    (
        "a folder as the suite",
        lambda folder, echo: [str(folder)],
        "is a folder; expected a YAML suite file",
    ),
]


@pytest.mark.parametrize("case,make,phrase", SUITE_CASES, ids=[c[0] for c in SUITE_CASES])
def test_a_hostile_suite_exits_2_before_anything_runs(db_path, tmp_path, echo, case, make, phrase):
    folder = tmp_path / "suites"
    folder.mkdir()
    arguments = make(folder, echo)
    result = CliRunner().invoke(cli, ["--db", str(db_path), "bench", "run", *arguments])
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and phrase in message, result.output
    assert "Traceback" not in result.output and "root:" not in result.output
    assert echo.requests == []  # nothing was sent to the suite's endpoint
    with open_db(db_path) as db:
        assert store.list_runs(db) == []


def test_file_prompts_inside_the_folder_are_read_and_an_upload_may_name_none(tmp_path):
    from devmode.suites.files import read_suite, read_suite_bytes
    from devmode.suites.suite import InvalidSuite

    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "risk.txt").write_text("Name one risk of bonds.")
    suite = _promptfoo("file://prompts/risk.txt").replace("ECHO", "http://127.0.0.1:8000/v1")
    (tmp_path / "suite.yaml").write_text(suite)
    assert read_suite(tmp_path / "suite.yaml").prompts[0].text == "Name one risk of bonds."
    uploaded = (tmp_path / "suite.yaml").read_bytes()  # the same file, uploaded on the page
    with pytest.raises(InvalidSuite, match="this suite has no folder of its own"):
        read_suite_bytes(uploaded, "suite.yaml")


def test_an_unreachable_grader_is_an_error_not_a_failure(db_path, echo):
    """An unreachable grader used to fail the cell (and pass it under not-llm-rubric)."""
    from devmode.suites.suite import Suite

    rubric = {"type": "llm-rubric", "value": "The reply names a risk."}
    suite = Suite.from_dict(
        {
            "name": "ungraded",
            "backend": {"kind": "endpoint", "base_url": echo.base_url, "model": "echo"},
            "grader": {"base_url": "http://127.0.0.1:9/v1", "model": "gone"},
            "prompts": [
                {"id": "graded", "text": "Name one risk of bonds.", "assert": [rubric]},
                {
                    "id": "negated",
                    "text": "Name one.",
                    "assert": [{**rubric, "type": "not-llm-rubric"}],
                },
            ],
        }
    )
    run = run_now(db_path, suite)
    with open_db(db_path) as db:
        report = reports.run_report(db, run.id)
    outcomes = [r["outcome"] for c in report["cells"] for r in c["replies"]]
    assert outcomes == ["error", "error"] and run.status == jobs.FAILED
    assert "the grader did not answer" in reports.failing(report)[0]


def test_rescore_checks_stored_replies_again_without_asking_and_keeps_errors(
    db_path, echo, tmp_path
):
    echo.fail_after = 6  # the last 2 replies never come
    first = run_now(db_path, echo_suite(echo))
    assert first.status == "failed"
    asked = len(echo.requests)
    # the same suite, now also asking that a reply never says "yields"
    changed = echo_suite(echo).to_dict()
    changed["assert"].append({"type": "not-icontains", "value": "yields"})
    changed["limits"]["max_tokens"] = 3  # a setting of the file, not of the stored replies
    changed["min_pass_rate"], changed["significance"] = 0.5, 0.01  # the checking suite's
    path = tmp_path / "stricter.yaml"
    path.write_text(json.dumps(changed))
    out = run_cli(db_path, "bench", "rescore", first.id, "--suite", path, "--json")
    assert len(echo.requests) == asked  # no reply asked for again
    assert out.exit_code == 1  # the new check fails the yields prompt
    report, _ = json.JSONDecoder().raw_decode(out.output[out.output.index("{") :])
    assert report["rescored_from"] == first.id and report["run"] != first.id
    with open_db(db_path) as db:
        before = {(r["cell"], r["repeat"]): r for r in store.results(db, first.id)}
        after = {(r["cell"], r["repeat"]): r for r in store.results(db, report["run"])}
        rescored = store.get_run(db, report["run"])
    assert rescored.rescored_from == first.id and rescored.status == "completed"
    # the new run says how the replies were made (max tokens 40), and the saved suite is kept
    assert rescored.as_suite().settings.limits.max_tokens == 40
    assert (rescored.as_suite().min_pass_rate, rescored.as_suite().significance) == (0.5, 0.01)
    assert [a.to_dict() for a in rescored.as_suite().assertions] == changed["assert"]
    with open_db(db_path) as db:
        assert store.find_suite(db, "echo-suite") == echo_suite(echo)
    assert set(after) == set(before)
    for key, row in after.items():
        assert row["text"] == before[key]["text"]
        if before[key]["outcome"] == "error":
            assert row["outcome"] == "error"  # errored replies stay errored
        elif key[0].startswith("yields"):
            new = [
                c
                for c in row["checks"]
                if c["assertion"] == {"type": "not-icontains", "value": "yields"}
            ]
            assert row["outcome"] == "fail" and new[0]["passed"] is False
        else:
            assert row["outcome"] == before[key]["outcome"]
    missing = run_cli(db_path, "bench", "rescore", 999)
    assert missing.exit_code == 2 and "No suite run with id 999" in missing.output


def test_a_rescore_that_cannot_be_made_exits_2_and_stores_nothing(db_path, echo, tmp_path):
    done = run_now(db_path, echo_suite(echo))
    other = tmp_path / "other.yaml"
    other.write_text("name: other\nprompts: [{id: elsewhere, text: hi}]\n")
    moved = tmp_path / "moved.yaml"  # the same ids, another text: not what the replies answer
    changed = echo_suite(echo).to_dict()
    changed["prompts"][0]["text"] = "What moves {ticker} today?"
    moved.write_text(json.dumps(changed))
    with open_db(db_path) as db:
        queued = store.create_run(db, echo_suite(echo))
        runs = len(store.list_runs(db))
    out = run_cli(db_path, "bench", "rescore", done.id, "--suite", other)
    assert out.exit_code == 2 and "shares no cell with the run of 'echo-suite'" in out.output
    out = run_cli(db_path, "bench", "rescore", done.id, "--suite", moved)
    assert out.exit_code == 2 and "the run's replies answer 'What moves {ticker}" in out.output
    out = run_cli(db_path, "bench", "rescore", queued.id)
    assert out.exit_code == 2 and f"Run {queued.id} is still queued" in out.output
    with open_db(db_path) as db:
        assert len(store.list_runs(db)) == runs


def test_a_multi_turn_case_sends_its_turns_first_and_checks_the_last_reply(db_path, echo):
    suite = suite_yaml(
        f"""\
            name: follow-up
            limits: {{temperature: 0, max_tokens: 40}}
            backend: {{kind: endpoint, base_url: "{echo.base_url}", model: echo}}
            prompts: ["And the yield?"]
            cases:
              - id: bond
                turns:
                  - {{role: user, content: Tell me about the 10-year note.}}
                  - {{role: assistant, content: It is a Treasury bond of ten years.}}
                assert:
                  - {{type: icontains, value: "and the yield"}}
                  - {{type: not-icontains, value: "10-year"}}
            variants:
              - {{name: roomy}}
              - {{name: tight, budget_tokens: 35}}
            """
    )
    assert suite.cases[0].turns[0] == ("user", "Tell me about the 10-year note.")
    assert suite_yaml(yaml_of(suite)) == suite  # turns survive being written out
    run = run_now(db_path, suite)
    assert run.status == "completed"
    roomy, tight = echo.requests[-2:]
    assert [m["role"] for m in roomy["messages"]][-3:] == ["user", "assistant", "user"]
    assert roomy["messages"][-3]["content"] == "Tell me about the 10-year note."
    assert [m["role"] for m in tight["messages"]] == ["system", "user"]  # the old turn dropped
    with open_db(db_path) as db:
        rows = store.results(db, run.id)
    assert [r["outcome"] for r in rows] == ["pass", "pass"]  # the last reply, not the turns


@pytest.mark.parametrize(
    "turns,phrase",
    [
        ("[{role: system, content: hi}]", "a turn's role is user or assistant; found 'system'"),
        ("[{role: user, content: '  '}]", "a user turn needs content"),
        ("[{role: user}]", "a user turn needs content"),
        ("{role: user, content: hi}", "turns must be a list"),
    ],
)
def test_a_bad_turn_is_refused_with_where_it_is(turns, phrase):
    with pytest.raises(InvalidSuite, match=phrase):
        suite_yaml(f"prompts: [hi]\ncases:\n  - turns: {turns}\n")
