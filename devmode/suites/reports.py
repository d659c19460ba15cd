"""A suite run as a report (JSON, CSV, a self-contained HTML page) and two runs compared.

    report = run_report(db, run_id)             # what --json prints and the page shows
    diff = compare(baseline, report)            # cells pass -> fail (regressions) and back
    failing(report, diff)                       # why a CI step should fail, or []

A report holds the suite as it ran, so a JSON report from an earlier ``--json`` is a baseline
for a CI job whose database is new.
"""

from __future__ import annotations

import csv
import html
import io
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from sqlite_utils import Database

from devmode.errors import DevmodeError
from devmode.suites import noise, store
from devmode.suites.runner import pass_counts, pass_rate, summarise
from devmode.suites.suite import Suite

FORMAT = "devmode-suite-report"
CSV_COLUMNS = (
    "cell",
    "prompt_id",
    "case_id",
    "variant",
    "repeat",
    "outcome",
    "why",
    "stopped_by",
    "which",
    "completion_tokens",
    "first_token_s",
    "total_s",
    "prompt",
    "text",
)


# A baseline report larger than this is not read (a report of thousands of replies is a few MB).
MAX_BASELINE_BYTES = 64 * 1024 * 1024


class NoBaseline(DevmodeError):
    """A baseline that is neither a stored run nor a report file."""


def run_report(db: Database, run_id: int) -> dict[str, Any]:
    run = store.get_run(db, run_id)
    suite = run.as_suite()
    return build_report(suite, store.results(db, run_id), run)


def build_report(suite: Suite, rows: list[dict[str, Any]], run=None) -> dict[str, Any]:
    by_cell: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_cell.setdefault(row["cell"], []).append(row)
    cells = []
    for cell in suite.cells():
        replies = by_cell.get(cell.key, [])
        rate = pass_rate(replies)
        cells.append(
            {
                "cell": cell.key,
                "prompt_id": cell.prompt.id,
                "case_id": cell.case.id,
                "variant": cell.variant.name,
                "prompt": cell.text,
                **noise.cell_stats(*pass_counts(replies)),
                "passed": rate is not None and rate >= suite.min_pass_rate,
                "replies": [_reply(r) for r in replies],
            }
        )
    return {
        "format": FORMAT,
        "suite": suite.name,
        "run": run.id if run else None,
        "status": run.status if run else None,
        "started_at": run.started_at if run else None,
        "finished_at": run.finished_at if run else None,
        "summary": summarise(suite, rows),
        "variants": [_variant_line(v.name, rows) for v in suite.variants],
        "cells": cells,
        "spec": suite.to_dict(),
    }


def _reply(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("repeat", "outcome", "text", "stopped_by", "which", "detail", "prompt_tokens")
    keys += ("completion_tokens", "first_token_s", "total_s", "checks")
    return {k: row.get(k) for k in keys}


def _variant_line(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    mine = [r for r in rows if r["variant"] == name and r["outcome"] != store.ERROR]

    def median(key: str) -> float | None:
        values = [r[key] for r in mine if r.get(key) is not None]
        return statistics.median(values) if values else None

    return {
        "variant": name,
        "replies": len(mine),
        **noise.cell_stats(*pass_counts(mine)),
        "median_total_s": median("total_s"),
        "median_first_token_s": median("first_token_s"),
        "median_completion_tokens": median("completion_tokens"),
    }


def load_baseline(db: Database, baseline: str) -> dict[str, Any]:
    """A baseline report: a stored run's id, or a JSON report file from an earlier ``--json``."""
    if baseline.isdigit() and not Path(baseline).is_file():
        try:
            return run_report(db, int(baseline))
        except DevmodeError:
            raise NoBaseline(
                f"The baseline {baseline!r} is neither a stored suite run in this database "
                "(see python -m devmode bench runs) nor a file. Give a run id from this "
                "database, or the JSON an earlier --json printed."
            ) from None
    path = Path(baseline)
    missing = (
        f"The baseline {baseline!r} is neither a stored suite run (see python -m devmode bench "
        "runs) nor a file. Give a run id, or the JSON an earlier --json printed."
    )
    if not path.exists():
        raise NoBaseline(missing)
    if not path.is_file():
        raise NoBaseline(
            f"The baseline {baseline} is {'a folder' if path.is_dir() else 'not a regular file'}; "
            "expected the JSON file an earlier bench run --json printed."
        )
    with path.open("rb") as f:
        data = f.read(MAX_BASELINE_BYTES + 1)
    if len(data) > MAX_BASELINE_BYTES:
        raise NoBaseline(
            f"The baseline file {path} is over {MAX_BASELINE_BYTES // (1024 * 1024)} MB; expected "
            "the JSON report an earlier bench run --json printed."
        )
    try:
        report = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise NoBaseline(
            f"The baseline file {path} is not JSON ({why}); expected --json's report."
        ) from None
    if not isinstance(report, dict) or report.get("format") != FORMAT:
        raise NoBaseline(
            f"The baseline file {path} is not a suite report (expected format {FORMAT!r}, as "
            "bench run --json prints)."
        )
    try:
        _BaselineReport.model_validate(report)
    except ValidationError as e:
        first = e.errors()[0]
        loc = [p for p in first["loc"] if p not in ("float", "int", "str", "bool")]  # union tags
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
        raise NoBaseline(
            f"The baseline file {path} has the report's format but not its fields: "
            f"{where.lstrip('.')}: {first['msg'].lower()} (found {first.get('input')!r:.60}). "
            "Expected the JSON bench run --json printed, unedited; make it again."
        ) from None
    return report


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


Rate = StrictFloat | StrictInt | None


class _BaselineCell(_Lenient):
    cell: StrictStr
    passed: StrictBool
    pass_rate: Rate = Field(ge=0, le=1)
    passes: StrictInt | None = Field(default=None, ge=0)
    repeats: StrictInt | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _passes_within_repeats(self) -> _BaselineCell:
        if (self.passes is None) != (self.repeats is None):
            raise ValueError("passes and repeats come together")
        if self.passes is not None and self.passes > self.repeats:
            raise ValueError(f"passes ({self.passes}) above repeats ({self.repeats})")
        return self


class _BaselineVariant(_Lenient):
    variant: StrictStr
    pass_rate: Rate = None
    median_total_s: Rate = None
    median_completion_tokens: Rate = None


class _BaselineReport(_Lenient):
    """What ``compare`` reads of a baseline: checked before the suite runs, not after."""

    suite: StrictStr
    run: StrictInt | None = None
    cells: list[_BaselineCell]
    variants: list[_BaselineVariant]


def compare(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What changed from report ``before`` to ``after``: every cell compared (its passes
    before and after, ``p_value``, ``p_adjusted``, ``regressed``: see ``noise.compare_cells``,
    at the after suite's ``significance``), the regressions among them, the flaky cells apart,
    cells whose verdict went from fail to pass (fixes), cells new or gone, and per variant the
    pass rate, the median latency and completion tokens before and after."""
    old = {c["cell"]: c for c in before["cells"]}
    new = {c["cell"]: c for c in after["cells"]}
    both = [key for key in new if key in old]
    old_variants = {v["variant"]: v for v in before["variants"]}
    level = (after.get("spec") or {}).get("significance", noise.DEFAULT_SIGNIFICANCE)
    counts_before = {k: _counts(old[k]) for k in both}
    counts_after = {k: _counts(new[k]) for k in both}
    cells = noise.compare_cells(counts_before, counts_after, significance=level)
    regressed = {c["cell"] for c in cells if c["regressed"]}
    # cells every reply of which errored on one side: nothing to compare them on
    unjudged = [k for k in both if not (counts_before[k][1] and counts_after[k][1])]
    return {
        "before": {"suite": before["suite"], "run": before.get("run")},
        "after": {"suite": after["suite"], "run": after.get("run")},
        "significance": level,
        "cells": cells,
        "regressions": [
            {**_change(old[c["cell"]], new[c["cell"]]), **c} for c in cells if c["regressed"]
        ],
        "flaky": [k for k in both if new[k].get("flaky") and k not in regressed],
        "fixes": [
            _change(old[k], new[k])
            for k in both
            if not old[k]["passed"] and new[k]["passed"] and k not in unjudged
        ],
        "unjudged": unjudged,
        "new_cells": [k for k in new if k not in old],
        "gone_cells": [k for k in old if k not in new],
        "variants": [
            {
                "variant": v["variant"],
                **{
                    f"{key}_{when}": line.get(key) if line else None
                    for key in ("pass_rate", "median_total_s", "median_completion_tokens")
                    for when, line in (("before", old_variants.get(v["variant"])), ("after", v))
                },
            }
            for v in after["variants"]
        ],
    }


def _counts(cell: dict[str, Any]) -> tuple[int, int]:
    """(passes, repeats) of a report's cell; a baseline from before repeats were counted is
    read from its replies, or from its verdict."""
    if cell.get("passes") is not None and cell.get("repeats") is not None:
        return cell["passes"], cell["repeats"]
    if cell.get("replies"):
        return pass_counts(cell["replies"])
    return int(bool(cell["passed"])), 1


def _change(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    return {
        "cell": new["cell"],
        "pass_rate_before": old["pass_rate"],
        "pass_rate_after": new["pass_rate"],
        "why": _why(new),
    }


def _why(cell: dict[str, Any]) -> str:
    """The first failed check of a cell, in words ('icontains: missing 'risk'')."""
    for reply in cell["replies"]:
        if reply["outcome"] == store.ERROR:
            judged = "not judged" if reply.get("text") else "no reply"  # the grader failed
            return f"{judged}: {reply['detail']}"
        for check in reply["checks"]:
            if not check["passed"]:
                return f"{check['assertion']['type']}: {check['reason']}"
    return ""


def failing(report: dict[str, Any], diff: dict[str, Any] | None = None) -> list[str]:
    """Why a CI step should fail: each failing cell and each regression, one line each."""
    lines = [f"FAIL {c['cell']}: {_why(c)}" for c in report["cells"] if not c["passed"]]
    if diff:
        lines += [
            f"REGRESSION {r['cell']}: {fall_text(r)}, now {r['why']}" for r in diff["regressions"]
        ]
    return lines


def fall_text(row: dict[str, Any]) -> str:
    """'pass rate 80% -> 0% (p 0.024, adjusted 0.048)', or 'passed, then failed (one repeat
    each: nothing to test)'."""
    if row.get("p_adjusted") is None:
        return "passed, then failed (one repeat each: nothing to test)"
    return (
        f"pass rate {_pct(row['pass_rate_before'])} -> {_pct(row['pass_rate_after'])} "
        f"(p {row['p_value']:.3g}, adjusted {row['p_adjusted']:.3g})"
    )


def failure_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """A row for each reply that failed or never came: cell, repeat, why, the reply."""
    rows = []
    for cell in report["cells"]:
        for reply in cell["replies"]:
            if reply["outcome"] == store.PASS:
                continue
            failed = [c for c in reply["checks"] if not c["passed"]]
            why = "; ".join(f"{c['assertion']['type']}: {c['reason']}" for c in failed)
            rows.append(
                {
                    "cell": cell["cell"],
                    "repeat": reply["repeat"] + 1,
                    "outcome": reply["outcome"],
                    "why": why or reply["detail"],
                    "reply": reply["text"],
                }
            )
    return rows


def cell_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """A row per cell: passes out of repeats, pass rate (pass@1) with its 95% interval,
    pass^k and flaky: what tells a flaky cell from a failing one."""
    return [
        {
            "cell": c["cell"],
            "passes": f"{c['passes']}/{c['repeats']}",
            "pass rate": _pct(c["pass_rate"]),
            "95% interval": "—"
            if c["interval"] is None
            else f"{c['interval'][0]:.0%}–{c['interval'][1]:.0%}",
            "pass^k": c["pass_all"],
            "flaky": c["flaky"],
            "passed": c["passed"],
        }
        for c in report["cells"]
    ]


def change_rows(diff: dict[str, Any]) -> list[dict[str, Any]]:
    """The regressions and fixes of a comparison as table rows."""
    return [
        {"change": change, **row}
        for key, change in (("regressions", "fell significantly"), ("fixes", "fail → pass"))
        for row in diff[key]
    ]


def diff_text(diff: dict[str, Any]) -> str:
    """'Run 3 → run 4: 2 regressions (a significant fall, at 0.05), 1 fix (fail → pass).'"""
    regressions, fixes = len(diff["regressions"]), len(diff["fixes"])
    text = (
        f"Run {diff['before']['run']} → run {diff['after']['run']}: "
        f"{regressions} regression{'s' * (regressions != 1)} (a significant fall, at "
        f"{diff.get('significance', noise.DEFAULT_SIGNIFICANCE):g}), "
        f"{fixes} fix{'es' * (fixes != 1)} (fail → pass)"
    )
    if diff.get("flaky"):
        text += f"; {len(diff['flaky'])} flaky (passed and failed within the run)"
    if diff.get("unjudged"):
        text += f"; {len(diff['unjudged'])} not compared (every reply errored on one side)"
    if diff["new_cells"] or diff["gone_cells"]:
        text += f"; {len(diff['new_cells'])} cells new, {len(diff['gone_cells'])} gone"
    return text + "."


def flaky_text(diff: dict[str, Any]) -> str:
    """'Flaky (passed and failed within the run, not regressions): p1/c1/plain, ...'."""
    return "Flaky (passed and failed within the run, not regressions): " + ", ".join(diff["flaky"])


def as_csv(report: dict[str, Any]) -> str:
    """One line per reply."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for cell in report["cells"]:
        for reply in cell["replies"]:
            failed = [c for c in reply["checks"] if not c["passed"]]
            writer.writerow(
                {
                    **{k: cell[k] for k in ("cell", "prompt_id", "case_id", "variant", "prompt")},
                    **reply,
                    "why": "; ".join(f"{c['assertion']['type']}: {c['reason']}" for c in failed),
                }
            )
    return out.getvalue()


def as_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False)


def grid(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of prompt x case, a column per variant holding 'pass', 'fail 1/3' or 'error': the
    table the page and the CLI show."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for cell in report["cells"]:
        row = rows.setdefault(
            (cell["prompt_id"], cell["case_id"]),
            {"prompt": cell["prompt_id"], "case": cell["case_id"]},
        )
        row[cell["variant"]] = verdict(cell)
    return list(rows.values())


def verdict(cell: dict[str, Any]) -> str:
    """'pass', 'fail 1/3', 'pass 4/5 flaky', 'error' or 'not run'."""
    replies = cell["replies"]
    if not replies:
        return "not run"
    if cell["pass_rate"] is None:
        return "error"
    word = "pass" if cell["passed"] else "fail"
    if len(replies) == 1:
        return word
    passes, repeats = _counts(cell)  # judged replies: an errored one is neither
    return f"{word} {passes}/{repeats}" + (" flaky" if cell.get("flaky") else "")


def as_html(report: dict[str, Any], diff: dict[str, Any] | None = None) -> str:
    """A self-contained page (no scripts, no links out): summary, pass rate per variant as
    bars, the grid with every reply and why it failed, and the regressions when compared."""
    e = html.escape
    summary = report["summary"]
    bars = "".join(
        f"<tr><td>{e(v['variant'])}</td><td><div class='bar'><div style='width:"
        f"{100 * (v['pass_rate'] or 0):.0f}%'></div></div></td><td>{_pct(v['pass_rate'])}</td>"
        f"<td>{_num(v['median_total_s'], 's')}</td><td>{_num(v['median_completion_tokens'])}</td></tr>"
        for v in report["variants"]
    )
    variants = [v["variant"] for v in report["variants"]]
    cells = {(c["prompt_id"], c["case_id"], c["variant"]): c for c in report["cells"]}
    lines = []
    for row in grid(report):
        tds = []
        for name in variants:
            cell = cells[(row["prompt"], row["case"], name)]
            state = verdict(cell).split()[0].replace("not", "none")
            replies = "".join(
                f"<details><summary>#{r['repeat'] + 1} {e(r['outcome'])} · {e(r['stopped_by'] or '')}"
                f"</summary><pre>{e(r['text'] or r['detail'] or '')}</pre><ul>"
                + "".join(
                    f"<li class='{'ok' if c['passed'] else 'bad'}'>{e(c['assertion']['type'])}: "
                    f"{e(c['reason'])}</li>"
                    for c in r["checks"]
                )
                + "</ul></details>"
                for r in cell["replies"]
            )
            tds.append(f"<td class='{state}'><b>{e(verdict(cell))}</b>{replies}</td>")
        prompt = cells[(row["prompt"], row["case"], variants[0])]["prompt"]
        lines.append(
            f"<tr><th title='{e(prompt)}'>{e(row['prompt'])} / {e(row['case'])}"
            f"<div class='prompt'>{e(prompt)}</div></th>{''.join(tds)}</tr>"
        )
    regressions = ""
    if diff:
        items = (
            "".join(f"<li><b>{e(r['cell'])}</b>: {e(r['why'])}</li>" for r in diff["regressions"])
            or "<li>none</li>"
        )
        fixes = "".join(f"<li>{e(r['cell'])}</li>" for r in diff["fixes"]) or "<li>none</li>"
        regressions = (
            f"<h2>Against run {e(str(diff['before']['run']))}</h2><h3>Regressions (a significant fall)"
            f"</h3><ul>{items}</ul><h3>Fixes (fail → pass)</h3><ul>{fixes}</ul>"
        )
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>{e(report["suite"])}: suite run {e(str(report.get("run") or ""))}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.4rem;vertical-align:top;text-align:left;max-width:28rem}}
.pass{{background:#e6f4ea}} .fail{{background:#fce8e6}} .error,.none{{background:#fef7e0}}
.bar{{width:12rem;background:#eee;height:.8rem}} .bar div{{background:#1e8e3e;height:.8rem}}
.prompt{{font-weight:normal;color:#555;font-size:.85em}} .ok{{color:#1e8e3e}} .bad{{color:#c5221f}}
pre{{white-space:pre-wrap;margin:.3rem 0}}
</style></head><body>
<h1>{e(report["suite"])}</h1>
<p>Run {e(str(report.get("run") or "—"))} · {e(str(report.get("status") or ""))} ·
{summary["passed"]} of {summary["cells"]} cells passed · {summary["replies"]} replies ·
{summary["errors"]} errors</p>
<h2>Pass rate per variant</h2>
<table><tr><th>variant</th><th></th><th>pass rate</th><th>median latency</th>
<th>median tokens</th></tr>{bars}</table>
{regressions}
<h2>Cells</h2>
<table><tr><th>prompt / case</th>{"".join(f"<th>{e(v)}</th>" for v in variants)}</tr>
{"".join(lines)}</table>
</body></html>
"""


# The formats a report downloads as, by file extension.
RENDERERS = {"csv": as_csv, "json": as_json, "html": as_html}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _num(value: float | None, unit: str = "") -> str:
    return "—" if value is None else f"{value:.2f} {unit}".strip() if unit else f"{value:g}"


def pass_rates_over_runs(runs: Sequence[store.SuiteRun], db: Database) -> list[dict[str, Any]]:
    """Pass rate per variant for each finished run of a suite, oldest first: the chart's data."""
    return store.pass_rates(db, [run.id for run in store.finished_runs(runs)])
