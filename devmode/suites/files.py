"""Suite files: devmode's YAML format, and the common subset of promptfoo's
``promptfooconfig.yaml``, read with the line of every field so a message can point at it.

    suite = read_suite("bonds.yaml")            # either format
    Path("out.yaml").write_text(suite_yaml(suite))   # devmode's format; reads back the same

devmode's format (every field but ``prompts`` is optional)::

    name: bond-basics
    description: Short answers about bonds
    system_prompt: You are a concise assistant for financial analysts.
    budget_tokens: 2048
    limits: {max_tokens: 48, temperature: 0}      # every variant's, unless it sets its own
    backend: embedded                             # or {kind: endpoint, base_url: ..., model: ...}
    repeat: 1                                     # replies per cell (for sampled settings)
    min_pass_rate: 1.0                            # share of a cell's repeats that must pass
    prompts:
      - What is a {thing}?
      - id: risk
        text: Name one risk of holding {thing}s.
        assert: [{type: icontains, value: risk}]
    cases:                                        # fill the {variables}
      - vars: {thing: bond}
      - vars: {thing: stock}
    variants:
      - {name: short, max_tokens: 20}
      - {name: one sentence, stop: ["."]}
      - {name: gpt, backend: {kind: endpoint, base_url: "http://127.0.0.1:8000/v1", model: smollm2}}
    assert:                                       # on every cell
      - {type: not-icontains, value: guarantee}
      - {type: stopped-by, value: stop_sequence, which: "."}

promptfoo's subset: ``description``, ``prompts`` (text, ``file://`` paths beside the file, or
``{id, label, raw}``), ``providers`` (``openai:...`` with ``config`` apiBaseUrl, apiKeyEnvar,
temperature, max_tokens, top_p, stop, seed, presence_penalty, frequency_penalty; ``devmode``
or ``embedded`` for the embedded model), ``tests`` (vars, assert, description),
``defaultTest`` (vars, assert) and ``evaluateOptions.repeat``. Each provider becomes a variant;
``{{ variables }}`` fill as devmode's ``{variables}`` do.

A suite file may come from a pull request, so it is read within bounds: at most
``MAX_SUITE_BYTES``, ``MAX_VALUES`` values once YAML aliases are expanded (an alias bomb is
refused, not expanded), no key twice in a mapping, and ``file://`` prompts only from regular
files inside the suite file's own folder (symlinks followed, then checked), at most
``MAX_PROMPT_FILE_BYTES`` each. A suite with no folder of its own (uploaded on the page,
stored in the database) may not name files at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from devmode.suites.suite import InvalidSuite, Suite

PROMPTFOO_KEYS = ("providers", "tests", "defaultTest", "evaluateOptions")
# promptfoo's OpenAI provider settings, as devmode's limits.
PROMPTFOO_LIMITS = {
    "temperature": "temperature",
    "max_tokens": "max_tokens",
    "top_p": "top_p",
    "stop": "stop",
    "seed": "seed",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
OPENAI_BASE_URL = "https://api.openai.com/v1"
# Bounds on what a suite file may make devmode read: the file, its values once YAML aliases are
# expanded (a 367-byte alias bomb expands to billions), and each file:// prompt.
MAX_SUITE_BYTES = 5 * 1024 * 1024
MAX_VALUES = 100_000
MAX_DEPTH = 32
MAX_PROMPT_FILE_BYTES = 1024 * 1024


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last
    one silently, so a second ``prompts:`` would hide the first)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            line = key_node.start_mark.line + 1
            _check_key(key_node)
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                first = seen[key]
                raise InvalidSuite(
                    f"the key {key!r} is given twice in one mapping (lines {first} and {line}); "
                    "YAML would keep only the last. Keep one."
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _check_key(node) -> None:
    if not isinstance(node, yaml.ScalarNode):
        raise InvalidSuite(
            f"a key at line {node.start_mark.line + 1} is a list or a mapping; expected a name "
            "(prompts, vars, ...)."
        )


def _load_with_lines(text: str) -> tuple[Any, dict[tuple, int]]:
    """The document, and the line of every field and list item by its path."""
    lines: dict[tuple, int] = {}
    loader = _UniqueKeyLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, lines
        stack = [(root, ())]
        while stack:  # every value once per path it is reached by, aliases expanded, counted
            node, path = stack.pop()
            lines[path] = node.start_mark.line + 1
            if len(lines) > MAX_VALUES:
                raise InvalidSuite(
                    f"it holds over {MAX_VALUES:,} values once its YAML aliases (*name) are "
                    "expanded; expected a suite of prompts, cases and variants. Write the values "
                    "out, or use fewer aliases of aliases."
                )
            if len(path) > MAX_DEPTH:
                raise InvalidSuite(
                    f"it nests its values more than {MAX_DEPTH} levels deep (line "
                    f"{lines[path]}); expected a suite of prompts, cases and variants a few "
                    "levels deep."
                )
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    _check_key(key)
                    stack.append((value, (*path, key.value)))
            elif isinstance(node, yaml.SequenceNode):
                stack.extend((item, (*path, i)) for i, item in enumerate(node.value))
        return loader.construct_document(root), lines
    finally:
        loader.dispose()


def read_suite(path: str | Path) -> Suite:
    """The suite in ``path`` (devmode's format or promptfoo's), checked through and through;
    its ``file://`` prompts are read from its own folder."""
    path = Path(path)
    if not path.exists():
        raise InvalidSuite(f"No suite file at {path}. Check the path.")
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise InvalidSuite(f"{path} is {kind}; expected a YAML suite file. Give the file's path.")
    return read_suite_bytes(_read_bounded(path, MAX_SUITE_BYTES, "suite"), path, folder=path.parent)


def read_suite_bytes(data: bytes, name: str | Path, *, folder: Path | None = None) -> Suite:
    """The suite in a file's bytes (an upload on the page: no folder, so no ``file://``)."""
    if len(data) > MAX_SUITE_BYTES:
        raise InvalidSuite(_too_big(Path(name).name, len(data), MAX_SUITE_BYTES, "suite file"))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSuite(
            f"{Path(name).name} is not a UTF-8 text file; expected a YAML suite."
        ) from None
    return parse_suite(text, source=name, folder=folder)


def parse_suite(
    text: str, *, source: str | Path = "suite.yaml", folder: Path | None = None
) -> Suite:
    """The suite a YAML text holds; ``source`` names it in messages, and ``file://`` prompts
    are read from inside ``folder`` (without one, they are refused)."""
    source = Path(source)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SUITE_BYTES:
        raise InvalidSuite(_too_big(source.name, size, MAX_SUITE_BYTES, "suite file"))
    try:
        values, lines = _load_with_lines(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InvalidSuite(
            f"{source.name} is not valid YAML{at}: {e.problem}. Fix the file and read it again."
        ) from None
    except yaml.YAMLError as e:
        raise InvalidSuite(f"{source.name} is not valid YAML: {e}.") from None
    except RecursionError:
        raise InvalidSuite(
            f"{source.name} nests its values too deeply to read; expected a suite of prompts, "
            "cases and variants a few levels deep."
        ) from None
    except InvalidSuite as e:
        raise InvalidSuite(f"{source.name}: {e}") from None
    if not isinstance(values, Mapping) or "prompts" not in values:
        found = (
            f"keys {', '.join(map(str, values))}"
            if isinstance(values, Mapping)
            else type(values).__name__
        )
        raise InvalidSuite(
            f"{source.name} is not a suite: expected a YAML mapping with prompts (and cases, "
            f"variants, assert), or a promptfooconfig.yaml; found {found}."
        )
    try:
        if any(key in values for key in PROMPTFOO_KEYS):
            values, lines = from_promptfoo(values, lines, folder)
        return Suite.from_dict(values, name=source.stem, lines=lines)
    except ValueError as e:  # the suite's, an assertion's or a limit's: each names the place
        raise InvalidSuite(f"{source.name}: {e}") from None
    except RecursionError:
        raise InvalidSuite(f"{source.name} nests its values too deeply to read.") from None


def _read_bounded(path: Path, limit: int, what: str) -> bytes:
    """At most ``limit`` bytes of the regular file ``path`` (read no further: a device such as
    /dev/zero never ends)."""
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InvalidSuite(_too_big(path.name, path.stat().st_size, limit, f"{what} file"))
    return data


def _too_big(name: str, size: int, limit: int, what: str) -> str:
    return (
        f"{name} is {size / 1024 / 1024:.1f} MB; a {what} may be at most "
        f"{limit / 1024 / 1024:g} MB. Expected a suite of prompts and cases; split it, or "
        "keep large texts out of it."
    )


def suite_yaml(suite: Suite) -> str:
    """The suite in devmode's format, every field explicit."""
    return yaml.safe_dump(suite.to_dict(), sort_keys=False, allow_unicode=True, width=100)


def from_promptfoo(
    values: Mapping[str, Any], lines: dict[tuple, int], folder: Path | None
) -> tuple[dict[str, Any], dict[tuple, int]]:
    """promptfoo's fields as devmode's, with the lines moved to the new paths."""
    moved: dict[tuple, int] = {(): lines.get((), 1)}
    by_head: dict[tuple, list[tuple[tuple, int]]] = {}  # paths under each (field, index)
    for path, line in lines.items():
        by_head.setdefault(path[:2], []).append((path, line))

    def move(old: tuple, new: tuple) -> None:
        for path, line in by_head.get(old[:2], ()):
            if path[: len(old)] == old:
                moved[new + path[len(old) :]] = line

    default = values.get("defaultTest") or {}
    if not isinstance(default, Mapping):
        raise InvalidSuite(
            "defaultTest must be a mapping (vars, assert); a file:// reference is not read here "
            f"(line {lines.get(('defaultTest',), '?')})"
        )
    out: dict[str, Any] = {}
    for key in ("description",):
        if key in values:
            out[key] = values[key]
    unsupported = sorted(
        set(values)
        - {"description", "prompts", "providers", "tests", "defaultTest", "evaluateOptions", "tags"}
    )
    if unsupported:
        raise InvalidSuite(
            f"promptfoo fields {', '.join(unsupported)} are not read by devmode (it reads "
            "description, prompts, providers, tests, defaultTest, evaluateOptions.repeat). "
            f"Remove them (line {lines.get((unsupported[0],), '?')})"
        )
    out["prompts"] = []
    prompts = values.get("prompts")
    prompts = [prompts] if isinstance(prompts, str) else prompts or []
    for i, prompt in enumerate(prompts):
        at = lines.get(("prompts", i), "?")
        if isinstance(prompt, Mapping):
            text, ident = prompt.get("raw"), prompt.get("id") or prompt.get("label")
        else:
            text, ident = prompt, None
        if isinstance(text, str) and text.startswith("file://"):
            text = _prompt_file(folder, text[len("file://") :], at)
        out["prompts"].append({"text": text, **({"id": str(ident)} if ident else {})})
        move(("prompts", i), ("prompts", i))
    providers = values.get("providers") or ["embedded"]
    providers = [providers] if isinstance(providers, str | Mapping) else providers
    out["variants"] = [
        _provider_variant(p, i, lines.get(("providers", i), "?")) for i, p in enumerate(providers)
    ]
    for i in range(len(providers)):
        move(("providers", i), ("variants", i))
    shared_vars = default.get("vars") or {}
    out["cases"] = []
    tests = values.get("tests") or []
    if not isinstance(tests, list):
        raise InvalidSuite(
            f"tests must be a list of test cases written in the file; found {tests!r} (a file of "
            f"tests is not read here: copy them in) (line {lines.get(('tests',), '?')})"
        )
    for i, test in enumerate(tests):
        if not isinstance(test, Mapping):
            raise InvalidSuite(
                f"Each test is a mapping (vars, assert); found {test!r} "
                f"(line {lines.get(('tests', i), '?')})"
            )
        case: dict[str, Any] = {"vars": {**shared_vars, **(test.get("vars") or {})}}
        if test.get("description"):
            case["id"] = str(test["description"])
        if test.get("assert"):
            case["assert"] = test["assert"]
        out["cases"].append(case)
        move(("tests", i), ("cases", i))
    if not out["cases"] and shared_vars:
        out["cases"] = [{"vars": dict(shared_vars)}]
    if default.get("assert"):
        out["assert"] = default["assert"]
        move(("defaultTest", "assert"), ("assert",))
    repeat = (values.get("evaluateOptions") or {}).get("repeat")
    if repeat is not None:
        out["repeat"] = repeat
        move(("evaluateOptions", "repeat"), ("repeat",))
    out["limits"] = {"temperature": 0.0}  # promptfoo sends the provider's settings, no more
    return out, moved


def _prompt_file(folder: Path | None, name: str, line) -> str:
    """A ``file://`` prompt: a regular file inside ``folder`` (relative to it; absolute names,
    ``..`` and links that lead out are refused), at most ``MAX_PROMPT_FILE_BYTES``."""
    where = f"(file:// prompt, line {line})"
    if folder is None:
        raise InvalidSuite(
            f"file://{name} cannot be read: this suite has no folder of its own (it was "
            f"uploaded or stored), so it may not name files {where}. Paste the prompt's text "
            "in, or run the suite file with python -m devmode bench run FILE."
        )
    inside = folder.resolve()
    path = (inside / name).resolve()
    if Path(name).is_absolute() or not path.is_relative_to(inside):
        raise InvalidSuite(
            f"file://{name} is outside the suite's folder {where}. Expected a file beside the "
            "suite file or below it, named relative to it (file://prompts/risk.txt)."
        )
    parts = (*Path(name).parts, *path.relative_to(inside).parts)
    if any(part.startswith(".") and part not in (".", "..") for part in parts):
        raise InvalidSuite(
            f"file://{name} names a hidden file or folder {where} (.git, .env hold credentials, "
            "not prompts). Keep prompt files in a folder of their own (file://prompts/risk.txt)."
        )
    if not path.is_file():
        problem = "no such file" if not path.exists() else "not a regular file"
        raise InvalidSuite(f"No prompt file {name} in the suite's folder ({problem}) {where}")
    data = _read_bounded(path, MAX_PROMPT_FILE_BYTES, "prompt")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSuite(f"The prompt file {name} is not UTF-8 text {where}") from None


def _provider_variant(provider: Any, i: int, line) -> dict[str, Any]:
    config: Mapping[str, Any] = {}
    label = None
    if isinstance(provider, Mapping):
        ident = str(provider.get("id") or "")
        config = provider.get("config") or {}
        label = provider.get("label")
    else:
        ident = str(provider)
    variant: dict[str, Any] = {"name": str(label or ident or f"v{i + 1}")}
    if ident in ("embedded", "devmode", "devmode:embedded"):
        variant["backend"] = "embedded"
    elif ident.startswith("openai:"):
        model = ident.split(":")[-1]
        variant["backend"] = {
            "kind": "endpoint",
            "base_url": str(config.get("apiBaseUrl") or OPENAI_BASE_URL),
            "model": model,
            **({"api_key_name": str(config["apiKeyEnvar"])} if config.get("apiKeyEnvar") else {}),
        }
    else:
        raise InvalidSuite(
            f"Provider {ident!r} is not one devmode runs: it runs openai:MODEL (any "
            "OpenAI-compatible endpoint, with config.apiBaseUrl) and embedded (line "
            f"{line})"
        )
    for theirs, ours in PROMPTFOO_LIMITS.items():
        if theirs in config:
            variant[ours] = config[theirs]
    return variant
