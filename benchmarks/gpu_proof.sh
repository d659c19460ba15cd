#!/usr/bin/env bash
# Issue 15's proof on one GPU, in one call of under 8 minutes: training speed and accuracy of
# the Hugging Face Trainer (tutorial and length-grouped, bf16) against devmode (eager bf16,
# --cuda-graphs, torch.compile reduce-overhead), 3 epochs on Financial PhraseBank all-agree and
# the Twitter topic set, seed 42, with each side's model-FLOP share of the bf16 matrix rate
# measured in the same run; then devmode's scorer (bf16) against transformers.pipeline on the
# 9,958 Benzinga headlines. Logs and JSON go to OUTPUT_DIR; the table comes last.
#
#   here:        .venv/bin/python benchmarks/pack_for_device.py     # writes device_carry/
#   on the GPU:  bash benchmarks/gpu_proof.sh $OUT                  # carry device_carry
#   dry run:     bash benchmarks/gpu_proof.sh --dry-run OUTPUT_DIR  # CPU, tiny slices, no
#                packing, no wheels, no torch.compile (tests/test_gpu_proof.py runs it on its
#                tiny model: DEVMODE_DRY_RUN_MODEL=FOLDER)
set -euo pipefail
dry_run=0
if [ "${1:-}" = "--dry-run" ]; then dry_run=1; shift; fi
out=${1:?"usage: benchmarks/gpu_proof.sh [--dry-run] OUTPUT_DIR"}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

if [ "$dry_run" = 1 ]; then
    python=${PYTHON:-.venv/bin/python}
    model=${DEVMODE_DRY_RUN_MODEL:-embedded}  # the tests pass their tiny model
    data=../shared/data
    sides=trainer,trainer-grouped,devmode,devmode-graphs
    compiled=""
    sizes=(--epochs 1 --rows-per-label 3)
    score_sizes=(--limit 64)
else
    python=python3
    carry=device_carry
    if [ ! -d "$carry/model" ]; then
        echo "No $carry/ here. Run benchmarks/pack_for_device.py first, and carry $carry." >&2
        exit 2
    fi
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$carry"/wheels/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    model=$carry/model
    data=$carry/data
    sides=trainer,trainer-grouped,devmode,devmode-graphs
    compiled=devmode-compile  # last: its compile time is the one figure not known in advance
    sizes=(--epochs 3)
    score_sizes=()
fi

start=$(date +%s)
{
    date -u
    nvidia-smi 2>/dev/null || echo "no nvidia-smi"
    "$python" -c 'import sys, torch, transformers; print(sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__)'
} >"$out/machine.txt" 2>&1

train() {  # train() SIDES NAME: the sides on both data sets, into NAME.json and NAME.log
    "$python" benchmarks/train_vs_hf.py --datasets allagree,topic --seeds 42 --sides "$1" \
        --base-model "$model" --data "$data" "${sizes[@]}" --json "$out/$2.json" \
        >"$out/$2.log" 2>&1 || { tail -30 "$out/$2.log"; return 1; }
}
train "$sides" train || exit 1
"$python" benchmarks/score_vs_pipeline.py --base-model "$model" --data "$data" \
    "${score_sizes[@]}" --json "$out/score.json" >"$out/score.log" 2>&1 ||
    { tail -30 "$out/score.log"; exit 1; }
tables=$out/train.json
if [ -n "$compiled" ]; then
    # what it measured before a failure still counts; the other figures are printed either way
    train "$compiled" compiled || echo "The torch.compile side stopped: see compiled.log."
    if [ -s "$out/compiled.json" ]; then tables=$tables,$out/compiled.json; fi
fi

echo "Training, $(tail -1 "$out/machine.txt"):" | tee "$out/table.txt"
"$python" benchmarks/train_vs_hf.py --table "$tables" | tee -a "$out/table.txt"
echo "Scoring:" | tee -a "$out/table.txt"
sed -n '/texts\/s/,$p' "$out/score.log" | tee -a "$out/table.txt"
echo "wall time: $(($(date +%s) - start)) s" | tee -a "$out/table.txt"
