"""What an open web console costs serving: HTTP throughput with one console open vs none.

One ``bitfit serve`` (packaged MiniLM, CPU) with 100 tasks; a closed-loop predict load (one
short text per request, concurrency 32, the task drawn at random) in phases of equal
length, alternating round by round between:

- **none**: the browser's two tabs on ``about:blank``;
- **console**: a real headless Chromium with one tab on the Tasks page (``/ui#/tasks``:
  the first page of 50 tasks, the details of the rows in view, the figures every 5 s) and
  one on the Jobs page (``/ui#/jobs``: the job list every 3 s), opened ``--settle`` seconds
  before the phase starts: a console left open. ``--settle 0`` opens them at the phase's
  start, so that their first reads (the page's opening burst) fall inside it.

The browser runs in both modes, at the lowest CPU priority (``nice -n 19``): a user's
browser runs on their own machine, and on a shared box its rendering would otherwise
compete with the server for the CPU, which is not what the console costs serving. The
difference is then what the console's requests cost the server. Target: console / none
throughput within noise (median of the per-round ratios >= 0.95); the server's CPU per
predict request in each mode is reported beside it::

    .venv/bin/python -m bench.console_cost --rounds 12              # a console left open
    .venv/bin/python -m bench.console_cost --rounds 12 --settle 0   # opened at each phase's start
    .venv/bin/python -m bench.console_cost --seconds 2 --rounds 1   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.http_load import emit, predict_factory, ratio_summary, run, run_load, short_texts, task_check
from bench.http_servers import add_server_options, bitfit_server, build_store, minilm_spec, server_env, task_name

TARGET = 0.95
PAGES = ("#/tasks", "#/jobs")


def open_console(driver, url: str, on: bool) -> None:
    """Each tab to its console page (reloaded), or to about:blank."""
    for handle, page in zip(driver.window_handles, PAGES):
        driver.switch_to.window(handle)
        driver.get("about:blank")
        if on:
            driver.get(f"{url}/ui{page}")
            driver.execute_script("performance.setResourceTimingBufferSize(100000); performance.clearResourceTimings();")


def reset_counts(driver) -> None:
    for handle in driver.window_handles:
        driver.switch_to.window(handle)
        driver.execute_script("performance.clearResourceTimings();")


def console_requests(driver) -> int:
    """The API calls the console's tabs made since they were opened (fetch() resource entries)."""
    total = 0
    for handle in driver.window_handles:
        driver.switch_to.window(handle)
        total += driver.execute_script(
            "return location.protocol === 'about:' ? 0 : performance.getEntriesByType('resource')"
            ".filter(e => e.initiatorType === 'fetch').length")
    return total


def low_priority_chromium():
    """Chromium started through a ``nice -n 19`` wrapper (its renderers inherit the priority)."""
    import tempfile

    from tests.browser_support import chromium_path, missing, start_chromium

    if missing():
        raise SystemExit(f"console_cost needs a browser: {missing()}")
    wrapper = Path(tempfile.mkdtemp(prefix="console-cost-")) / "chromium"
    wrapper.write_text(f'#!/bin/sh\nexec nice -n 19 "{chromium_path()}" "$@"\n')
    wrapper.chmod(0o755)
    return start_chromium(binary=str(wrapper))


def measure(driver, server, args: argparse.Namespace, texts: list[str], tasks: list[str]) -> tuple[dict, list[dict]]:
    """Both modes per round (their order alternating): totals per mode and each round's throughputs."""
    totals = {mode: [0, 0.0, 0.0, 0] for mode in ("none", "console")}  # ok, seconds, server CPU s, console requests
    rounds: list[dict[str, float]] = []
    for r in range(args.rounds):
        rounds.append({})
        for mode in (("none", "console") if r % 2 == 0 else ("console", "none")):
            open_console(driver, server.url, mode == "console")
            if args.settle:  # the same wait in both modes
                time.sleep(args.settle)
                reset_counts(driver)
            make = predict_factory(texts, tasks, seed=r)  # the same draws in both modes
            cpu0 = server.cpu_seconds()
            result = run(run_load(server.url, make, concurrency=args.concurrency, max_requests=args.requests,
                                  max_seconds=args.seconds, check=task_check(make)))
            calls = console_requests(driver)
            for k, v in enumerate((result.ok, result.seconds, server.cpu_seconds() - cpu0, calls)):
                totals[mode][k] += v
            rounds[-1][mode] = result.ok / result.seconds
            emit({"bench": "console_cost", "round": r, "mode": mode, "console_requests": calls, **result.summary()})
    return totals, rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serving throughput with the web console open vs none.")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    parser.add_argument("--requests", type=int, default=100_000, help="cap per phase")
    parser.add_argument("--rounds", type=int, default=6, help="each round runs both modes")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds the console is open before a phase is measured")
    add_server_options(parser)
    args = parser.parse_args(argv)

    store = build_store(minilm_spec(), args.tasks)
    texts, tasks = short_texts(), [task_name(i) for i in range(args.tasks)]
    driver = low_priority_chromium()
    try:
        driver.switch_to.new_window("tab")
        with bitfit_server(store, extra=["--console", "on", *args.server_arg], env=server_env(args.server_env)) as server:
            server.wait_ready()
            run(run_load(server.url, predict_factory(texts, tasks, 99), concurrency=args.concurrency, max_requests=args.warmup,
                         max_seconds=60))
            totals, rounds = measure(driver, server, args, texts, tasks)
    finally:
        driver.quit()
    rps = {m: t[0] / t[1] for m, t in totals.items()}
    per_round = ratio_summary([(r["console"], r["none"]) for r in rounds])
    summary = {"bench": "console_cost", "summary": True, "tasks": args.tasks, "concurrency": args.concurrency, "rounds": args.rounds,
               "seconds_per_phase": args.seconds, "settle_s": args.settle,
               "none_rps": round(rps["none"], 2), "console_rps": round(rps["console"], 2),
               "pooled_ratio": round(rps["console"] / rps["none"], 4),
               "console_requests_per_s": round(totals["console"][3] / totals["console"][1], 3),
               **{f"{m}_server_cpu_ms_per_request": round(1000 * t[2] / max(t[0], 1), 3) for m, t in totals.items()},
               **per_round}
    emit({**summary, "target": TARGET, "met": per_round.get("median_round_ratio", 0) >= TARGET, "cpus": os.cpu_count()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
