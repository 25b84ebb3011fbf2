"""``bitfit worker``: train and publish task specs dropped into an inbox folder, one at a time."""

from __future__ import annotations

import argparse
import logging
import sys

from training.store_args import add_store_arguments

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inbox", required=True, metavar="DIR", help="folder to watch for task specs (YAML or JSON)")
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--store", metavar="URL", help="put trained bias sets into this bias store: a folder or s3://bucket/prefix")
    out.add_argument("--push", metavar="URL", help="upload trained bias sets to a running server (POST URL/tasks)")
    parser.add_argument("--api-key", help="the server's API key for --push (default: $BITFIT_API_KEY)")
    add_store_arguments(parser)
    parser.add_argument("--backbone", metavar="PATH", help="default backbone for specs that name none (default: packaged MiniLM)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default); a spec may override it")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between inbox scans when idle")
    parser.add_argument("--once", action="store_true", help="process what is in the inbox now, then exit")
    parser.add_argument("--to-queue", action="store_true",
                        help="queue each spec as a job on --store's job queue instead of training it here "
                             "(`bitfit jobs worker --store` trains them)")
    parser.add_argument("--data-root", action="append", default=[], metavar="DIR",
                        help="a folder outside the inbox whose files specs may name (repeatable); other paths are refused")
    parser.add_argument("--max-epochs", type=int, default=100, help="refuse specs asking for more epochs")
    parser.add_argument("--max-train-seconds", type=float, default=6 * 3600,
                        help="no epoch of a task starts after this long; the best epoch so far is kept")


def run(args: argparse.Namespace) -> int:
    from training.errors import preflight_problem

    if problem := preflight_problem(args.backbone):
        print(f"bitfit worker: error: {problem}", file=sys.stderr)
        return 2
    from engine.backbone import resolve_device
    from training.errors import TrainingError
    from training.publish import Target
    from training.store_args import store_options
    from training.worker import Worker

    try:
        device = str(resolve_device(args.device))
        defaults = {"device": device, **({"backbone": args.backbone} if args.backbone else {})}
        target = Target(store=args.store, push=args.push, api_key=args.api_key, s3_endpoint_url=args.s3_endpoint_url,
                        store_options=store_options(args))
        queue = None
        if args.to_queue:
            if not args.store:
                raise TrainingError("--to-queue needs --store: the queue lives in the store")
            from training.jobs.queue import JobQueue

            queue = JobQueue.for_store(target.open_store())
        worker = Worker(args.inbox, target, defaults=defaults, data_roots=args.data_root, max_epochs=args.max_epochs,
                        max_train_seconds=args.max_train_seconds, queue=queue)
    except (TrainingError, RuntimeError, OSError) as exc:
        print(f"bitfit worker: error: {exc}", file=sys.stderr)
        return 2
    if args.once:
        results = worker.run_once()
        failed = [r for r in results if not r.ok]
        log.info("%d specs processed, %d failed", len(results), len(failed))
        return 1 if failed else 0
    try:
        worker.run_forever(interval=args.interval)
    except KeyboardInterrupt:
        log.info("stopped; a spec in processing/ is trained again at the next start")
    return 0
