"""The GIL convoy the serving worker meets: a call without the GIL, then the GIL back from a busy loop.

A worker thread repeats a 2 ms call that releases the GIL (``time.sleep``, standing for
ONNX Runtime's ``Session.run``) followed by ~0.1 ms of Python (its answers); another
thread spins in Python (the event loop in a burst of requests). Each time the worker wants
the GIL back it waits until the spinning thread is forced to drop it: up to the switch
interval. Printed: the worker's time per step, alone and beside the spinning thread, for
several ``sys.setswitchinterval`` values (server/process/serve_cli.py sets 0.5 ms)::

    python -m bench.gil_convoy
"""

from __future__ import annotations

import json
import sys
import threading
import time


def worker(steps: int, out: list[float]) -> None:
    t0 = time.perf_counter()
    for _ in range(steps):
        time.sleep(0.002)  # the forward: no GIL
        total = 0
        for i in range(2000):  # its answers: Python, with the GIL
            total += i
    out.append(1000 * (time.perf_counter() - t0) / steps)


def spin(stop: threading.Event) -> None:
    x = 0
    while not stop.is_set():
        for i in range(200):
            x += i


def step_ms(interval: float, busy: bool, steps: int = 300) -> float:
    sys.setswitchinterval(interval)
    stop, out = threading.Event(), []
    spinner = threading.Thread(target=spin, args=(stop,))
    if busy:
        spinner.start()
    w = threading.Thread(target=worker, args=(steps, out))
    w.start()
    w.join()
    stop.set()
    if busy:
        spinner.join()
    return out[0]


def main() -> int:
    default = sys.getswitchinterval()
    try:
        for interval in (0.005, 0.001, 0.0005):
            for busy in (False, True):
                print(json.dumps({"bench": "gil_convoy", "switch_interval_ms": interval * 1000, "busy_event_loop": busy,
                                  "ms_per_2ms_step": round(step_ms(interval, busy), 2)}), flush=True)
    finally:
        sys.setswitchinterval(default)
    return 0


if __name__ == "__main__":
    sys.exit(main())
