"""Model archives: export here, import there; hostile archives refused with nothing written."""

import json
import stat
import zipfile

import pytest

from devmode import environment
from devmode.db import open_db
from devmode.models import archives, registry, runs
from devmode.models.scorers import load_scorer
from tests.conftest import file_digest, run_cli

LIMIT = 50 * 1024 * 1024


def export(news_db, tmp_path):
    with open_db(news_db) as db:
        return archives.export_zip(db, 1, tmp_path / "model.zip")


def import_(news_db, archive, max_bytes=LIMIT):
    with open_db(news_db) as db:
        return archives.import_zip(db, archive, environment.files_dir(news_db), max_bytes=max_bytes)


def test_an_exported_model_comes_back_as_a_run_that_scores_the_same(news_db, tmp_path):
    archive = export(news_db, tmp_path)
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
    assert "devmode-run-1/devmode_model.json" in names and "devmode-run-1/devmode_run.json" in names
    model = import_(news_db, archive)
    with open_db(news_db) as db:
        original, imported = runs.get_run(db, 1), runs.get_run(db, model.run_id)
        registry.promote(db, model.run_id, "sentiment")
    assert model.run_id == 2 and imported.status == "completed"
    assert imported.test == original.test and imported.config.epochs == original.config.epochs
    assert (
        imported.dataset == original.dataset and imported.versions["imported_from"] == "model.zip"
    )
    texts = ["good profit", "awful loss", "flat sales"]
    before = load_scorer(models_dir_of(news_db, 1)).score(texts)
    after = load_scorer(model.path).score(texts)
    assert before.labels == after.labels
    assert (abs(before.probabilities - after.probabilities) < 1e-6).all()


def models_dir_of(news_db, run_id):
    with open_db(news_db) as db:
        return registry.get_model_for_run(db, run_id).path


def rewritten(archive, tmp_path, name="hostile.zip", extra=(), drop=(), link=None):
    """A copy of ``archive`` with entries added (name, bytes) or left out, or a link added."""
    out = tmp_path / name
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if not any(info.filename.endswith(d) for d in drop):
                dst.writestr(info, src.read(info))
        for entry, data in extra:
            dst.writestr(entry, data)
        if link:
            info = zipfile.ZipInfo(link[0])
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            dst.writestr(info, link[1])
    return out


def record(value) -> dict:
    """A change to an archive: its run record replaced by ``value`` (an object or raw bytes)."""
    data = value if isinstance(value, bytes) else json.dumps(value).encode()
    return {"drop": ["devmode_run.json"], "extra": [("devmode-run-1/devmode_run.json", data)]}


ARCHIVE_CASES = [
    ({"extra": [("devmode-run-1/../../escaped.txt", b"x")]}, "outside its folder"),
    ({"extra": [("/tmp/absolute.txt", b"x")]}, "outside its folder"),
    ({"extra": [("devmode-run-1\\..\\win.txt", b"x")]}, "outside its folder"),
    ({"link": ("devmode-run-1/vocab_link", "/etc/passwd")}, "or is a link"),
    ({"drop": ["head.safetensors"]}, "head.safetensors missing"),
    (
        {
            "extra": [("devmode-run-1/head.safetensors", b"not weights")],
            "drop": ["head.safetensors"],
        },
        "does not load",
    ),
    (record({"config": {"epochs": -5}}), "training config that cannot be: epochs must be"),
    (record({"config": {"learning_rate": "fast"}}), "learning_rate must be a number"),
    (record(b"{not json"), "devmode_run.json is not JSON"),
    (record(b"[1, 2]"), "devmode_run.json holds a list; expected a JSON object"),
    (record({"test": "great"}), "test = 'great'; expected object"),
    (record({"test": {"accuracy": "high", "macro_f1": 0.5}}), "test.accuracy = 'high'"),
    (record({"baseline": {"majority": {"accuracy": 2}}}), "baseline.majority.accuracy = 2"),
    (record({"split_seed": "forty-two"}), "split_seed = 'forty-two'; expected int"),
    (
        {"extra": [("devmode-run-1/config.json/inner.txt", b"x")]},
        "uses 'devmode-run-1/config.json' both as a file and as a folder",
    ),
    ({"extra": [("devmode-run-1/" + "a" * 300, b"x")]}, "longer than a file system takes"),
    ({"extra": [("devmode-run-1/config.json", b"{}")]}, "the same entry more than once"),
]


@pytest.mark.parametrize("change,phrase", ARCHIVE_CASES)
def test_hostile_or_broken_archives_are_refused_and_leave_nothing(
    news_db, tmp_path, change, phrase
):
    archive = rewritten(export(news_db, tmp_path), tmp_path, **change)
    before = file_digest(news_db)
    with pytest.raises(archives.InvalidArchive, match=phrase):
        import_(news_db, archive)
    assert file_digest(news_db) == before
    with open_db(news_db) as db:
        assert [r.id for r in runs.list_runs(db)] == [1] and len(registry.list_models(db)) == 1
    assert not list(registry.models_dir(environment.files_dir(news_db)).glob("imported-*"))
    assert (
        not (tmp_path.parent / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    )


def test_size_count_and_zip_bomb_limits(news_db, tmp_path, monkeypatch):
    archive = export(news_db, tmp_path)
    with pytest.raises(archives.InvalidArchive, match="archives up to"):
        import_(news_db, archive, max_bytes=1000)
    bomb = rewritten(archive, tmp_path, "bomb.zip")
    with zipfile.ZipFile(bomb, "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr("devmode-run-1/zeros.bin", b"\0" * (8 * 1024 * 1024))  # 8 MB -> a few KB
    with pytest.raises(archives.InvalidArchive, match="would unpack to"):
        import_(news_db, bomb, max_bytes=bomb.stat().st_size + 1)
    monkeypatch.setattr(archives, "MAX_ARCHIVE_FILES", 5)
    with pytest.raises(archives.InvalidArchive, match="files; a model has a dozen"):
        import_(news_db, archive)
    not_zip = tmp_path / "model.zip.txt"
    not_zip.write_text("hello")
    with pytest.raises(archives.InvalidArchive, match="is not a zip file"):
        import_(news_db, not_zip)


def test_the_cli_imports_an_archive(news_db, tmp_path):
    archive = export(news_db, tmp_path)
    result = run_cli(news_db, "models", "import", archive)
    assert result.exit_code == 0, result.output
    assert "Imported model.zip as run 2" in result.output
    listed = run_cli(news_db, "models", "list").output
    assert "2" in listed
    bad = rewritten(archive, tmp_path, extra=[("../x", b"")])
    refused = run_cli(news_db, "models", "import", bad)
    assert refused.exit_code == 1 and "outside its folder" in refused.output
    record = json.loads(zipfile.ZipFile(archive).read("devmode-run-1/devmode_run.json"))
    assert record["dataset"] == "tiny" and "test" in record


def test_an_archive_from_before_the_stable_recipe_imports_with_the_recipe_it_ran(news_db, tmp_path):
    archive = export(news_db, tmp_path)
    written = json.loads(zipfile.ZipFile(archive).read("devmode-run-1/devmode_run.json"))
    earlier = {"layer_lr_decay", "average_last_epochs", "early_stopping_patience"}
    config = {k: v for k, v in written["config"].items() if k not in earlier}
    older = rewritten(archive, tmp_path, "older.zip", **record({**written, "config": config}))
    model = import_(news_db, older)
    with open_db(news_db) as db:
        imported = runs.get_run(db, model.run_id).config
    # an earlier devmode wrote no such keys: it had one rate, no average, patience 2
    assert (imported.layer_lr_decay, imported.average_last_epochs) == (1.0, 0)
    assert imported.early_stopping_patience == 2


def test_an_archive_whose_data_lies_about_its_header_is_refused(news_db, tmp_path):
    """A flipped byte inside an entry: its CRC no longer matches; nothing is registered."""
    archive = export(news_db, tmp_path)
    stored = tmp_path / "stored.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    data = bytearray(stored.read_bytes())
    config = zipfile.ZipFile(stored).read("devmode-run-1/config.json")
    at = data.index(config) + len(config) // 2
    data[at] ^= 0xFF
    stored.write_bytes(bytes(data))
    with pytest.raises(
        archives.InvalidArchive, match="is damaged: its entry 'devmode-run-1/config.json'"
    ):
        import_(news_db, stored)
    with open_db(news_db) as db:
        assert [r.id for r in runs.list_runs(db)] == [1]


def test_after_a_refused_record_every_view_of_the_runs_still_works(news_db, tmp_path):
    """The class of failure: a bad record stored once broke `runs list`, `runs show`, `runs
    compare` and the page for good. It is now refused, and every view goes on working."""
    bad = rewritten(export(news_db, tmp_path), tmp_path, **record({"config": {"epochs": -5}}))
    refused = run_cli(news_db, "models", "import", str(bad))
    assert refused.exit_code == 1 and "epochs must be" in refused.output
    assert "Traceback" not in refused.output
    for command in (
        ["runs", "list"],
        ["runs", "show", "1"],
        ["runs", "compare", "1"],
        ["models", "list"],
    ):
        assert run_cli(news_db, *command).exit_code == 0, command
