"""``bitfit jobs <command>``: the job queue from the command line (``worker``; ``submit``,
``list``, ``show``, ``logs``, ``cancel`` against a server, in remote_cli.py).

Each command is one function that takes its argparse parser, adds its flags and returns
the function that runs it; ``SUBCOMMANDS`` lists them (add one there to add a command).
Heavy imports (torch, the store) happen inside the returned runner, so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from training.jobs import remote_cli
from training.store_args import add_store_arguments

log = logging.getLogger(__name__)

Runner = Callable[[argparse.Namespace], int]


def worker(parser: argparse.ArgumentParser) -> Runner:
    """run a training worker that claims jobs from a store's queue, trains and publishes them"""
    parser.add_argument("--store", required=True, metavar="URL",
                        help="the bias store whose queue to serve and where to publish: a folder or s3://bucket/prefix")
    add_store_arguments(parser)
    parser.add_argument("--lease", type=float, default=30.0, metavar="SECONDS",
                        help="a claim's lease; a worker silent this long loses its job to another worker")
    parser.add_argument("--once", action="store_true", help="run the jobs queued now, then exit")
    parser.add_argument("--worker-id", help="this worker's name in job records (default: host-pid-random)")
    parser.add_argument("--backbone", metavar="PATH", help="the backbone jobs train on (default: packaged MiniLM)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--idle-sleep", type=float, default=1.0, metavar="SECONDS", help="wait between claims when idle")
    parser.add_argument("--max-train-seconds", type=float, default=6 * 3600,
                        help="no epoch of a job starts after this long; the best epoch so far is kept")
    parser.add_argument("--joint", type=int, default=1, metavar="N",
                        help="claim up to N queued jobs at once and train them in one joint run (1: one by one)")

    def run(args: argparse.Namespace) -> int:
        from training.errors import preflight_problem

        if problem := preflight_problem(args.backbone):
            print(f"bitfit jobs worker: error: {problem}", file=sys.stderr)
            return 2
        from bias_store.open_store import open_store
        from engine.backbone import resolve_device
        from training.jobs.queue import JobQueue
        from training.jobs.worker import JobWorker
        from training.store_args import store_options

        try:
            store = open_store(args.store, s3_endpoint_url=args.s3_endpoint_url, **store_options(args))
            worker = JobWorker(JobQueue.for_store(store), store, worker_id=args.worker_id, lease_s=args.lease,
                               device=str(resolve_device(args.device)), backbone=args.backbone,
                               max_train_seconds=args.max_train_seconds, joint=args.joint)
        except (ValueError, OSError, RuntimeError) as exc:
            print(f"bitfit jobs worker: error: {exc}", file=sys.stderr)
            return 2
        if args.once:
            ran = 0
            while worker.run_once() is not None:
                ran += 1
            log.info("jobs worker %s: %d jobs run; the queue is empty", worker.worker_id, ran)
            return 0
        import threading

        try:
            worker.run_forever(threading.Event(), idle_sleep=args.idle_sleep)
        except KeyboardInterrupt:
            log.info("stopped; a job it was running is re-queued when its lease expires")
        return 0

    return run


# `worker` trains from a store's queue; the others talk to a server over HTTP (remote_cli.py).
SUBCOMMANDS: list[Callable[[argparse.ArgumentParser], Runner]] = [worker, *remote_cli.COMMANDS]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="jobs_command", required=True, metavar="COMMAND")
    for configure in SUBCOMMANDS:
        text = (configure.__doc__ or "").strip()
        child = sub.add_parser(configure.__name__.replace("_", "-"), help=text, description=text,
                               formatter_class=parser.formatter_class)
        child.set_defaults(jobs_run=configure(child))


def run(args: argparse.Namespace) -> int:
    return int(args.jobs_run(args) or 0)
