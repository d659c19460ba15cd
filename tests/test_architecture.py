"""Keep the layout honest: pages stay thin, the core stays free of Streamlit."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_PAGES = {
    "sqlite3",
    "sqlite_utils",
    "torch",
    "transformers",
    "datasets",
    "openai",
    "threading",
    "subprocess",
    "multiprocessing",
}
PAGES = sorted(ROOT.glob("pages/*.py")) + [ROOT / "app.py"]
CORE = sorted(ROOT.glob("devmode/*.py"))


def imported_top_level_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_stay_thin(page):
    assert imported_top_level_modules(page) & FORBIDDEN_IN_PAGES == set()


@pytest.mark.parametrize("module", CORE, ids=lambda p: p.name)
def test_core_does_not_import_streamlit(module):
    if module.name != "ui.py":
        assert "streamlit" not in imported_top_level_modules(module)


def test_no_module_is_named_after_a_dependency():
    shadowing = {
        "datasets",
        "torch",
        "openai",
        "streamlit",
        "plotly",
        "transformers",
        "sqlite_utils",
    }
    assert {p.stem for p in CORE} & shadowing == set()


def test_every_page_is_linked_from_home():
    from devmode.ui import PAGES as LINKED

    assert {path for path, _, _ in LINKED} == {str(p.relative_to(ROOT)) for p in PAGES}


def test_importing_the_core_has_no_side_effects(tmp_path, monkeypatch):
    """Importing devmode creates no database and loads no model."""
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    code = "import devmode, devmode.cli, devmode.ingest; import sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert list(tmp_path.iterdir()) == []
