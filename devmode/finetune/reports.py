"""Reading runs for people: before vs after on the test split, published references, comparisons.

rows = before_after(run)        # majority, zero-shot, fine-tuned, and published figures
table = compare_runs([a, b])    # the settings that differ, the metrics, the deltas
"""

from __future__ import annotations

from typing import Any

# Published results on the shared datasets, recognised by the sha256 of the uploaded file.
_PHRASEBANK_NOTE = "FinBERT (Araci 2019), 110M parameters"
REFERENCES: dict[str, list[dict[str, Any]]] = {
    # Financial PhraseBank, sentences_50agree.csv ("all data" in the FinBERT paper)
    "4d7df276a674d3af05399e730f989ba84f5444dafdff0d55947caecf6ce8ad8b": [
        {"model": _PHRASEBANK_NOTE, "accuracy": 0.86, "macro_f1": 0.84},
    ],
    # Financial PhraseBank, sentences_allagree.csv
    "10a722eb08223f5b3abfb7aaa805e2de9fa70b54827d27ff0213977d8a239fbd": [
        {"model": _PHRASEBANK_NOTE, "accuracy": 0.97, "macro_f1": 0.95},
    ],
    # Twitter financial news topic, train.csv
    "ffa39696baaf6a4ecdce52951f1131b16a01790179df25c61237ad42ca839490": [
        {
            "model": "finbert-tone fine-tune (published model card)",
            "accuracy": 0.91,
            "macro_f1": None,
        },
    ],
}


def score_text(value: float | None, digits: int = 3) -> str:
    """A score as a person reads it; a figure that was never published or measured is "-"
    (the Twitter-topic reference has no macro-F1)."""
    return "-" if value is None else f"{value:.{digits}f}"


def references_for(dataset_sha256: str | None) -> list[dict[str, Any]]:
    """Published figures for a dataset recognised by its file hash; empty when unknown."""
    return REFERENCES.get(dataset_sha256 or "", [])


def before_after(run) -> list[dict[str, Any]]:
    """One row per model judged on the run's test split, baselines first, then published figures.

    Rows: ``{"model", "accuracy", "macro_f1", "kind"}`` with kind ``baseline``, ``previous`` (the
    dataset's earlier model, scored again on these rows), ``fine-tuned`` or ``published``
    (published figures come from the papers' own splits, not this one).
    """

    def line(model: str, kind: str, figures: dict[str, Any]) -> dict[str, Any]:
        return {
            "model": model,
            "kind": kind,
            "accuracy": figures["accuracy"],
            "macro_f1": figures["macro_f1"],
        }

    rows = []
    if run.baseline:
        majority = run.baseline["majority"]
        rows.append(line(f"majority class ({majority.get('predicts')})", "baseline", majority))
        rows.append(line("base model, zero-shot", "baseline", run.baseline["zero_shot"]))
    if run.comparison:
        name = f"previous model (run {run.comparison['run_id']}), same test rows"
        rows.append(line(name, "previous", run.comparison))
    if run.test:
        name = "few-shot (SetFit)" if run.config.method == "few-shot" else fine_tuned_name(run)
        rows.append(line(name, "fine-tuned", run.test))
    for ref in references_for(run.dataset_sha256):
        rows.append({**ref, "kind": "published"})
    return rows


def fine_tuned_name(run) -> str:
    """What a fine-tuned run kept: the average of its last epochs, or its best epoch."""
    first = run.config.first_averaged_epoch
    if first and run.best_epoch and first < run.best_epoch:
        return f"fine-tuned (average of epochs {first}-{run.best_epoch})"
    return f"fine-tuned (best epoch {run.best_epoch})"


def gain_text(run) -> str | None:
    """'Gain over run 3 on the same 90 test rows: accuracy +0.031 (0.900 → 0.931), macro-F1
    +0.040 (…)', or None when the run has no earlier model on its dataset to beat."""
    if not (run.comparison and run.test):
        return None
    before = run.comparison
    parts = [
        f"{name} {run.test[key] - before[key]:+.3f} ({before[key]:.3f} → {run.test[key]:.3f})"
        for name, key in (("accuracy", "accuracy"), ("macro-F1", "macro_f1"))
    ]
    return (
        f"Gain over run {before['run_id']} on the same {before['n']:,} test rows: "
        + ", ".join(parts)
        + "."
    )


def adapted_rows(bases) -> list[dict[str, Any]]:
    """The adapted bases as a table: name, datasets, texts, progress, held-out loss."""
    return [
        {
            "base model": base.reference,
            "from datasets": ", ".join(base.datasets),
            "texts": base.texts,
            "status": base.status,
            "progress": f"{base.fraction_done:.0%}",
            "held-out masked-word loss": (base.summary or {}).get("held_out_loss"),
            "minutes": round((base.summary or {}).get("seconds", 0) / 60, 1) or None,
            "created": base.created_at[:16],
            "error": base.error or "",
        }
        for base in bases
    ]


def adapted_names(bases) -> list[str]:
    return [base.name for base in bases]


def caveat_text(run) -> str | None:
    """Why a run's test figures are not an estimate (its teachers saw the test rows), or None."""
    return (run.test or {}).get("caveat")


def calibration_text(run) -> str | None:
    """'Temperature 1.42, fitted on 120 validation rows: calibration error on the 120 test rows
    0.061 raw, 0.018 scaled.', the reason a run was left at 1, or None before its report."""
    fitted = (run.test or {}).get("calibration")
    if not fitted:
        return None
    if fitted.get("note"):
        return f"Not calibrated (temperature 1): {fitted['note']}"
    return (
        f"Temperature {fitted['temperature']:.2f}, fitted on {fitted['fitted_on']:,} validation "
        f"rows: expected calibration error on the {fitted['rows']:,} test rows "
        f"{fitted['ece_before']:.3f} raw, {fitted['ece_after']:.3f} scaled "
        f"({fitted['bins']} bins). Scores, alerts and the labelling order use the scaled "
        "probabilities."
    )


def compare_runs(runs_to_compare: list) -> list[dict[str, Any]]:
    """Rows of a side-by-side table: every setting that differs, then scores and speed.

    Metric rows after the first run carry the change against it, e.g. ``0.951 (+0.012)``.
    """
    configs = [r.config.to_dict() for r in runs_to_compare]
    rows = [
        {"setting": "dataset", "values": [r.dataset for r in runs_to_compare]},
        {"setting": "status", "values": [r.status for r in runs_to_compare]},
    ]
    for name in configs[0]:
        values = [c.get(name) for c in configs]
        if name != "dataset" and len({repr(v) for v in values}) > 1:
            rows.append({"setting": name, "values": values})

    def metric(name, getter, digits=3):
        values = [getter(r) for r in runs_to_compare]
        first = values[0]
        shown = []
        for i, v in enumerate(values):
            if v is None:
                shown.append("-")
            elif i == 0 or first is None:
                shown.append(f"{v:.{digits}f}")
            else:
                shown.append(f"{v:.{digits}f} ({v - first:+.{digits}f})")
        rows.append({"setting": name, "values": shown})

    metric("test accuracy", lambda r: r.test["accuracy"] if r.test else None)
    metric("test macro-F1", lambda r: r.test["macro_f1"] if r.test else None)
    metric("epoch kept", lambda r: r.best_epoch, 0)
    metric("samples/s", lambda r: r.samples_per_second, 0)
    return rows


def before_after_table(run) -> list[dict[str, Any]]:
    """``before_after`` as the table a person reads: model, accuracy, macro-F1, kind."""
    return [
        {
            "model": r["model"],
            "accuracy": r["accuracy"],
            "macro-F1": r["macro_f1"],
            "kind": r["kind"],
        }
        for r in before_after(run)
    ]


def compare_table(runs_to_compare: list) -> list[dict[str, Any]]:
    """``compare_runs`` as the table a person reads: a column per run, ``run 3``, ``run 4``."""
    return [
        {
            "setting": row["setting"],
            **{
                f"run {run.id}": str(value)
                for run, value in zip(runs_to_compare, row["values"], strict=True)
            },
        }
        for row in compare_runs(runs_to_compare)
    ]


def estimate_text(evaluation, metric: str) -> str:
    """'0.944 [0.921, 0.967]': a metric's mean over the folds and its 95% interval, or '-'
    before the evaluation has finished."""
    estimate = (evaluation.summary or {}).get(metric)
    if not estimate:
        return "-"
    return f"{estimate['mean']:.3f} [{estimate['low']:.3f}, {estimate['high']:.3f}]"


def comparison_rows(compared: dict[str, Any]) -> list[dict[str, str]]:
    """The comparison of two evaluations as a table: per metric, both means, the difference
    with its interval, and the p-value."""
    rows = []
    for name, figures in compared["metrics"].items():
        difference = figures["difference"]
        rows.append(
            {
                "metric": "macro-F1" if name == "macro_f1" else name,
                "first": f"{figures['first']:.3f}",
                "second": f"{figures['second']:.3f}",
                "difference": f"{difference['mean']:+.3f}",
                "interval": f"{difference['low']:+.3f}, {difference['high']:+.3f}",
                "p": f"{difference['p_value']:.3f}",
            }
        )
    return rows


def evaluation_table(evaluation) -> list[dict[str, Any]]:
    """An evaluation's summary as rows: each metric's mean over the folds, its 95% interval
    and the folds' spread; then each fold's figures."""
    rows = [
        {
            "": "macro-F1" if name == "macro_f1" else name,
            "mean": round(estimate["mean"], 4),
            "95% interval": f"{estimate['low']:.3f} – {estimate['high']:.3f}",
            "std over folds": round(estimate["std"], 4),
        }
        for name, estimate in (evaluation.summary or {}).items()
        if name in ("accuracy", "macro_f1")
    ]
    return rows


def fold_table(evaluation) -> list[dict[str, Any]]:
    """Each finished fold: its test rows, accuracy, macro-F1, temperature and best epoch."""
    return [
        {
            "fold": r["fold"] + 1,
            "test rows": r["rows_test"],
            "accuracy": round(r["accuracy"], 4),
            "macro-F1": round(r["macro_f1"], 4),
            "temperature": round(r["temperature"], 3),
            "best epoch": r["best_epoch"],
        }
        for r in evaluation.fold_results
    ]


def evaluation_labels(found: list, *, completed_only: bool = False) -> dict[int, str]:
    """Evaluation id -> 'Evaluation 2: phrasebank, 5 folds, 0.944 [0.93, 0.96] (completed)';
    ``completed_only``: those a comparison can take."""
    return {
        e.id: f"Evaluation {e.id}: {e.dataset}, {e.folds} folds, accuracy "
        f"{estimate_text(e, 'accuracy')} ({e.status})"
        for e in found
        if e.is_completed or not completed_only
    }


def pooled_calibration_text(evaluation) -> str:
    """'Expected calibration error of the 2,259 out-of-fold predictions: 0.041 raw, 0.012 with
    each fold's temperature (15 bins).'"""
    pooled = evaluation.summary["pooled"]
    return (
        f"Expected calibration error of the {pooled['rows']:,} out-of-fold predictions: "
        f"{pooled['ece_before']:.3f} raw, {pooled['ece_after']:.3f} with each fold's "
        f"temperature ({pooled['bins']} bins)."
    )
