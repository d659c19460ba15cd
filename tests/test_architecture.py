"""Keep the layout honest: folders by capability, pages that only read widgets, call and render,
settings stated once, the core free of Streamlit, inference free of the training loop."""

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

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
CORE = sorted(ROOT.glob("devmode/**/*.py"))
CAPABILITIES = {"data", "labels", "finetune", "models", "monitor", "chat", "suites"}
SHARED = {
    "__init__.py",
    "__main__.py",
    "addresses.py",
    "auth.py",
    "charts.py",
    "cli.py",
    "clitools.py",
    "db.py",
    "environment.py",
    "errors.py",
    "jobs.py",
    "launcher.py",
    "schema.py",
    "serving.py",
    "specs.py",
}
# The one folder beside the capabilities: what the pages share, and the only Streamlit code.
UI = ROOT / "devmode" / "ui"
MAX_MODULE_LINES = 600


def imported_top_level_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


def devmode_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``from devmode... import names`` in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("devmode"):
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("devmode")]
    return found


def package_of(path: Path) -> str | None:
    relative = path.relative_to(ROOT / "devmode")
    return relative.parts[0] if len(relative.parts) > 1 else None


# ----------------------------------------------------------------------------------------------
# Folders and modules


def test_the_package_is_grouped_by_capability():
    folders = {
        p.name for p in (ROOT / "devmode").iterdir() if p.is_dir() and p.name != "__pycache__"
    }
    assert folders == CAPABILITIES | {"ui"}
    assert {p.name for p in (ROOT / "devmode").glob("*.py")} == SHARED
    for folder in CAPABILITIES:
        assert (ROOT / "devmode" / folder / "__init__.py").read_text().startswith('"""')


# Tests of the whole app rather than of one module: the browser journeys and faults, the pages
# in Streamlit's AppTest, this file, and the GPU proof's dry run.
APP_TESTS = {"architecture", "journey", "faults", "pages", "gpu_proof"}


def test_the_tests_mirror_the_package():
    """tests/<capability>/test_<module>[_<what>].py beside devmode/<capability>/<module>.py, and
    tests/test_<module>[_<what>].py for the shared modules; a capability's browser journey is its
    test_journey.py. Helpers live in conftest.py or a *_support.py module, never in a test file."""
    misplaced = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        folder = path.parent.relative_to(ROOT / "tests")
        stem = path.stem.removeprefix("test_")
        if folder.parts:
            assert folder.parts[0] in CAPABILITIES and len(folder.parts) == 1, path
            modules = {m.stem for m in (ROOT / "devmode" / folder).glob("*.py")} | {"journey"}
        else:
            modules = {m.removesuffix(".py") for m in SHARED} | APP_TESTS
        if not any(stem == m or stem.startswith(m + "_") for m in modules):
            misplaced.append(str(path.relative_to(ROOT)))
    assert misplaced == []
    borrowed = []
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.split(".")[-1].startswith("test_"):
                    borrowed.append(f"{path.relative_to(ROOT)} imports {node.module}")
    assert borrowed == [], "move what a test file shares to conftest.py or a *_support.py"


@pytest.mark.parametrize("module", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_the_limit(module):
    lines = len(module.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module.name}: {lines} lines"


@pytest.mark.parametrize("module", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_packages_use_each_other_only_through_public_names(module):
    """No capability reaches into another's private helpers; none imports the CLI or the UI."""
    own = package_of(module)
    for name, imported in devmode_imports(module):
        parts = name.split(".")
        other = (
            parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in CAPABILITIES) else None
        )
        # a command line module may gather others (devmode/cli.py adds suites/cli.py's group)
        commands = module.name in ("__main__.py", "cli.py")
        assert name != "devmode.cli" or commands
        assert not (set(imported) & {"cli"}) or commands
        assert not (name.startswith("devmode.ui") or "ui" in imported) or own == "ui"
        if other and other != own:
            assert not [n for n in imported if n.startswith("_")], f"{module}: {name} {imported}"


@pytest.mark.parametrize("module", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_does_not_import_streamlit(module):
    if UI not in module.parents:
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


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def import_graph() -> dict[str, set[str]]:
    """Module -> the devmode modules it imports: at the top and inside functions alike (only a
    ``TYPE_CHECKING`` block, which never runs, is left out)."""
    modules = {module_name(p) for p in CORE}
    graph = {}
    for path in CORE:
        tree = ast.parse(path.read_text())
        skipped = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
            for inner in ast.walk(node)
        }
        found = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    found.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[module_name(path)] = (found & modules) - {module_name(path)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of ``graph`` with more than one member (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            part = []
            while not part or part[-1] != node:
                part.append(stack.pop())
                on_stack.discard(part[-1])
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def folder_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in CAPABILITIES else None


def test_no_import_cycle_between_modules_or_capability_folders():
    graph = import_graph()
    assert cycles(graph) == []
    folders: dict[str, set[str]] = {}
    for module, imported in graph.items():
        for other in imported:
            if folder_of(module) and folder_of(other) and folder_of(other) != folder_of(module):
                folders.setdefault(folder_of(module), set()).add(folder_of(other))
    assert cycles(folders) == [], folders


def test_the_cycle_check_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}; import sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return set(out.stdout.split())


def test_inference_does_not_depend_on_the_training_loop():
    """Scoring and the registry load models through the classifier module, never the loop."""
    for module in (
        "devmode.models.inference",
        "devmode.models.registry",
        "devmode.monitor.score_jobs",
    ):
        loaded = _loaded_after(f"import {module}")
        assert "devmode.finetune.training" not in loaded, module
        assert "devmode.finetune.worker" not in loaded, module
    assert "devmode.models.classifier" in _loaded_after("import devmode.models.inference")


def test_importing_the_core_has_no_side_effects(tmp_path, monkeypatch):
    """Importing devmode creates no database and loads no model."""
    monkeypatch.chdir(tmp_path)
    code = (
        "import devmode, devmode.cli, devmode.data.ingest, devmode.monitor.alerts; import sys; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert list(tmp_path.iterdir()) == []


def documented_layout() -> set[str]:
    """The files the Layout block of docs/architecture.md lists, as paths (folders nest by two
    spaces)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    listed, folders = set(), []
    for line in block.splitlines():
        if not line.strip() or not re.match(r"^\s*\S+(\.py|/)(\s|$)", line):
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        folders = folders[:depth]
        for name in re.split(r"\s{2,}", line.strip())[0].split():
            if name.endswith("/"):
                folders.append(name)
            else:
                listed.add("".join(folders) + name)
    return listed


def test_the_documented_layout_matches_the_tree():
    actual = {str(p.relative_to(ROOT)) for p in CORE + sorted(ROOT.glob("pages/*.py"))}
    actual.add("app.py")
    packages = {f"devmode/{c}/__init__.py" for c in CAPABILITIES}
    assert documented_layout() == actual - packages


# ----------------------------------------------------------------------------------------------
# Pages


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_import_nothing_that_belongs_in_the_core(page):
    assert imported_top_level_modules(page) & FORBIDDEN_IN_PAGES == set()


# Streamlit (or ui) calls that draw something: a loop in a page must draw in every pass.
RENDERS = re.compile(
    r"^(st|ui|c|col|column|box|container)\b|\.(markdown|button|caption|metric|write|"
    r"chat_message|page_link|plotly_chart|dataframe|progress|info|error|warning|success)$"
)
NUMBER_WIDGETS = {"number_input", "slider", "select_slider"}
AGGREGATES = {"sum", "min", "max", "sorted", "map", "filter"}


def _is_text(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.IfExp):
        return _is_text(node.body) and _is_text(node.orelse)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _is_text(node.left) and _is_text(node.right)
    return False


def _call_name(node: ast.Call) -> str:
    return ast.unparse(node.func)


def page_logic(page: Path) -> list[str]:
    """What in a page is more than reading widgets, calling devmode and rendering."""
    found = []
    tree = ast.parse(page.read_text())
    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, (ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp)):
            found.append(f"{where}: shapes data ({ast.unparse(node)[:60]})")
        elif isinstance(node, ast.BinOp) and not _is_text(node):
            if not (isinstance(node.op, ast.Mod) and _is_text(node.left)):
                found.append(f"{where}: arithmetic ({ast.unparse(node)[:60]})")
        elif isinstance(node, ast.Call):
            name = _call_name(node)
            if name in AGGREGATES:
                found.append(f"{where}: aggregates ({name})")
            if name.rsplit(".", 1)[-1] in NUMBER_WIDGETS:
                bounds = node.args[1:] + [
                    k.value
                    for k in node.keywords
                    if k.arg in ("min_value", "max_value", "value", "step")
                ]
                if any(
                    isinstance(b, ast.Constant) and isinstance(b.value, (int, float))
                    for b in bounds
                ):
                    found.append(f"{where}: a literal bound in {name}")
        elif isinstance(node, ast.For):
            calls = [
                _call_name(n)
                for stmt in node.body
                for n in ast.walk(stmt)
                if isinstance(n, ast.Call)
            ]
            if not any(RENDERS.search(c) for c in calls):
                found.append(f"{where}: a loop that draws nothing")
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_only_read_widgets_call_and_render(page):
    assert page_logic(page) == []


def test_the_page_check_finds_logic(tmp_path):
    """The check above is not vacuous: each kind of page logic it forbids is found."""
    path = tmp_path / "page_with_logic.py"
    path.write_text(
        "import streamlit as st\n"
        "rows = [r for r in range(3)]\n"
        "average = sum(rows) / 3\n"
        "st.number_input('Budget', 16, 4096)\n"
        "for r in rows:\n"
        "    average = r\n"
        "for r in rows:\n"
        "    st.markdown(f'{r}' + ' rows')\n"
    )
    found = sorted(problem.split(": ", 1)[1].split(" (")[0] for problem in page_logic(path))
    assert found == [
        "a literal bound in st.number_input",
        "a loop that draws nothing",
        "aggregates",
        "arithmetic",
        "shapes data",
    ]


def test_pages_are_declared_once_in_the_navigation():
    """Every page file is in ``ui.PAGES`` (titles, icons and addresses in one place), Home is a
    page of its own at ``/`` (not listed as "app"), and the old addresses keep working."""
    from devmode.ui import PAGES as DECLARED

    assert {path for path, *_ in DECLARED} == {
        str(p.relative_to(ROOT)) for p in ROOT.glob("pages/*.py")
    }
    assert [address for *_, address in DECLARED] == [
        "",
        "Datasets",
        "Fine_tune",
        "Playground",
        "Monitor",
        "Chat_sandbox",
        "Suites",
    ]
    for page in ROOT.glob("pages/*.py"):
        source = page.read_text()
        assert "ui.page_setup(__file__" in source
        assert "set_page_config" not in source and "st.title(" not in source
    assert "ui.navigation().run()" in (ROOT / "app.py").read_text()


# ----------------------------------------------------------------------------------------------
# Settings stated once


def settings_classes() -> list[type]:
    """Every ``specs.Settings`` class in the package (each module imported, so none is missed)."""
    from devmode.specs import Settings

    for module in CORE:
        name = ".".join(module.relative_to(ROOT).with_suffix("").parts)
        importlib.import_module(name.removesuffix(".__init__"))
    return Settings.__subclasses__()


def test_every_setting_has_a_spec_with_help():
    classes = settings_classes()
    assert len(classes) >= 9
    for cls in classes:
        specs = cls.specs()
        plain = {"limits", "backend"} if cls.__name__ == "ChatSettings" else set()
        assert {s.name for s in specs} | plain == set(cls.__dataclass_fields__), cls
        assert all(s.help.strip() for s in specs), cls


# Options the CLI writes by hand although a spec has the same flag, and why.
HAND_WRITTEN = {
    "--api-key-env": "serve: the key clients must send (default: none), not the endpoint's key",
    "--stop": "watch: stop the running watcher, not a stop sequence",
    "--model": "classify: a model reference (3, active-sentiment, base), not a chat model's name",
    "--prices": "ingest: a flag (the file is a prices file), not the backtest's prices dataset",
}


def test_the_cli_takes_settings_from_their_specs():
    """No CLI option restates a setting (its flag, default, bounds or help): every option whose
    flag is a setting's is made from the spec, and carries its default and help."""
    from click.testing import CliRunner

    from devmode.chat.limits import ChatLimits
    from devmode.cli import cli
    from devmode.models.config import TrainConfig
    from devmode.monitor.alerts import RuleSettings

    flags = {spec.cli_flag for cls in settings_classes() for spec in cls.specs()}
    command_lines = sorted((ROOT / "devmode").glob("**/cli.py"))
    assert len(command_lines) == 1 + len(CAPABILITIES)  # the root and one per capability
    written = {
        node.args[0].value
        for path in command_lines
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and _call_name(node) == "click.option"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    assert written & flags == set(HAND_WRITTEN)
    runner = CliRunner()
    for command, cls in (
        ("train", TrainConfig),
        ("chat", ChatLimits),
        ("alerts add", RuleSettings),
    ):
        help_text = " ".join(runner.invoke(cli, [*command.split(), "--help"]).output.split())
        for spec in cls.specs():
            assert spec.cli_flag in help_text, (command, spec.name)
            assert " ".join(spec.help.split())[:40] in help_text, (command, spec.name)
