#!/usr/bin/env bash
# Every CPU benchmark, one after another, each printing JSON lines. All output is also
# appended to $OUT/bench.log. Add your script as one more line of BENCHES (the arguments
# after the Python); keep it a plain list.
#
#   bash bench/run_all.sh            # the full figures (tens of minutes on 2 cores)
#   PYTHON=python3 bash bench/run_all.sh
#
# --threads 1: on a small shared machine a 2-thread parallel region waits whenever
# another process holds the other core, which swamps what the benchmarks compare (see
# docs/benchmarks/engine.md). Interleaved timing inside each script does the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-./.bench-out}
mkdir -p "$OUT"
LOG="$OUT/bench.log"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

BENCHES=(
  "bench/engine_mixed_vs_plain.py --model minilm --batch 32 --length 64 --threads 1 --repeats 30"
  "bench/engine_mixed_vs_plain.py --model bert-base --batch 32 --length 128 --threads 1 --repeats 8 --warmup 1"
  "bench/engine_memory.py --model minilm --counts 1,100,1000,10000"
  "bench/engine_register.py --model minilm --tasks 1000"
  "bench/engine_mixed_vs_plain.py --model bert-base-narrow --batch 8 --length 8 --threads 1 --repeats 300 --warmup 20 --baselines none"
  "bench/engine_forward_cost.py --model minilm"
  "bench/engine_split.py --model minilm"
  "bench/engine_heads.py"
  "-m bench.http_load"
  "-m bench.http_mixed_vs_single"
  "-m bench.http_protocols"
  "-m bench.client_overhead"
  "-m bench.http_vs_naive"
  "-m bench.upload_to_servable --what-if-no-fsync"
  "-m bench.cold_start"
  "-m bench.console_cost --rounds 12"
)

failed=0
for bench in "${BENCHES[@]}"; do
  echo "== $bench"
  # shellcheck disable=SC2086  # each entry is a command line: split it into words
  $PY $bench 2>&1 | tee -a "$LOG" || { echo "== FAILED: $bench" | tee -a "$LOG"; failed=1; }
done
exit $failed
