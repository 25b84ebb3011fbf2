"""One result line for a gpu_check.sh step, from the JSON lines it added (read on stdin).

    step=eager-float16 rc=0 s=41 | mixed/plain: mixed 1.031 general 1.102 accumulate 1.040 fused 1.012 ...

Ratios are the median over rounds of the paired (same round) ratio, wall clock.
"""

from __future__ import annotations

import json
import sys


def result_line(name: str, rc: str, seconds: str, lines: list[str]) -> str:
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a stray printed line
    parts = []
    for r in records:
        if r.get("bench") == "mixed_vs_plain_ratio" and r.get("clock") == "wall":
            num, den = r["ratio"].split("/")
            label = num.removeprefix("encoder_").removeprefix("mixed_") if den == "encoder_plain" else r["ratio"]
            parts.append(f"{label} {r['median_paired_ratio']:.3f}")
        elif r.get("bench") == "http_mixed_vs_single" and r.get("summary"):
            parts.append(f"http mixed/single median-round {r['median_round_ratio']:.3f} pooled {r['pooled_ratio']:.3f}"
                         f" ({r['mixed_rps']:.0f} vs {r['single_rps']:.0f} req/s)")
    shape = next((r for r in records if r.get("bench") == "mixed_vs_plain_ratio"), None)
    where = f" [{shape['model']} {shape['dtype']} b{shape['batch']} L{shape['length']} compiled={shape['compiled']}]" if shape else ""
    return f"step={name} rc={rc} s={seconds}{where}" + (" | " + ", ".join(parts) if parts else "")


if __name__ == "__main__":
    print(result_line(*sys.argv[1:4], sys.stdin.read().splitlines()), flush=True)
