"""``bitfit jobs submit | list | show | logs | cancel``: training jobs on a running server, over HTTP.

Each subcommand is one function; they talk to ``--url`` with the Python client (bitfit_client),
an admin key from ``--api-key`` or ``$BITFIT_API_KEY``. ``bitfit jobs worker`` (cli.py) is the
other side: it trains what these submit. Exit codes: 0 done, 1 the job or the server said no,
2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

Runner = Callable[[argparse.Namespace], int]

DEFAULT_URL = "http://127.0.0.1:8000"


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help="the server (default: %(default)s)")
    parser.add_argument("--api-key", help="an admin key of the server (default: $BITFIT_API_KEY)")


def _runner(func: Callable[[argparse.Namespace], int], name: str) -> Callable[[argparse.Namespace], int]:
    """``func``, with the server's refusals as one line on stderr (exit 1) and bad local input exit 2."""

    def run(args: argparse.Namespace) -> int:
        from bitfit_client import BitfitError

        try:
            return func(args)
        except BitfitError as exc:
            print(f"bitfit jobs {name}: {exc}", file=sys.stderr)
            return 1
        except (OSError, ValueError) as exc:
            print(f"bitfit jobs {name}: {exc}", file=sys.stderr)
            return 2

    return run


def submit(parser: argparse.ArgumentParser) -> Runner:
    """upload data to a server and queue a training job"""
    _connection(parser)
    parser.add_argument("--task", help="the task the job trains and publishes (or \"task\" in --config)")
    parser.add_argument("--train", required=True, type=Path, metavar="FILE", help="training data (CSV or JSONL)")
    parser.add_argument("--validation", type=Path, metavar="FILE", help="validation data (picks the epoch and learning rate)")
    parser.add_argument("--test", type=Path, metavar="FILE", help="test data (scored in the report)")
    parser.add_argument("--config", type=Path, metavar="JSON", help="a job config file (docs/TRAINING.md); flags win")
    parser.add_argument("--text-column", help="default: text")
    parser.add_argument("--label-column", help="default: label")
    parser.add_argument("--epochs", type=int, help="default: auto")
    parser.add_argument("--learning-rate", type=float, help="default: auto (searched on --validation)")
    parser.add_argument("--publish", choices=("always", "if_better", "never"), help="default: if_better")
    parser.add_argument("--idempotency-key", help="the same key resubmitted answers the same job")
    parser.add_argument("--wait", action="store_true", help="follow the job's events until it ends; exit 1 unless it succeeded")
    return _runner(submit_job, "submit")


def list(parser: argparse.ArgumentParser) -> Runner:  # noqa: A001 (the subcommand's name)
    """list a server's jobs, newest first"""
    _connection(parser)
    parser.add_argument("--status", help="only jobs in this status (queued, running, succeeded, failed, cancelled)")
    parser.add_argument("--task", help="only jobs for this task")
    parser.add_argument("--limit", type=int, default=20, help="at most this many (default: %(default)s)")
    return _runner(list_jobs, "list")


def _one_job(parser: argparse.ArgumentParser) -> None:
    _connection(parser)
    parser.add_argument("job_id", metavar="JOB_ID")


def show(parser: argparse.ArgumentParser) -> Runner:
    """one job as JSON: status, progress, learning rate, metrics, result or error"""
    _one_job(parser)
    return _runner(show_job, "show")


def logs(parser: argparse.ArgumentParser) -> Runner:
    """a job's events; --follow until it ends"""
    _one_job(parser)
    parser.add_argument("--follow", "-f", action="store_true", help="keep following until the job ends (exit 1 unless it succeeded)")
    return _runner(job_logs, "logs")


def cancel(parser: argparse.ArgumentParser) -> Runner:
    """cancel a job: a queued one ends now, a running one within seconds (nothing is published)"""
    _one_job(parser)
    return _runner(cancel_job, "cancel")


COMMANDS = [submit, list, show, logs, cancel]  # cli.py's SUBCOMMANDS takes them beside `worker`


def _client(args: argparse.Namespace):  # -> bitfit_client.Client
    from bitfit_client import Client

    return Client(args.url, api_key=args.api_key, timeout=120.0)


def _config(args: argparse.Namespace) -> dict:
    config = json.loads(args.config.read_text()) if args.config else {}
    if not isinstance(config, dict):
        raise ValueError(f"{args.config}: a job config is a JSON object")
    for flag, key in (("task", "task"), ("text_column", "text_column"), ("label_column", "label_column"), ("publish", "publish")):
        if getattr(args, flag) is not None:
            config[key] = getattr(args, flag)
    hyper = dict(config.get("hyperparameters") or {})
    if args.epochs is not None:
        hyper["epochs"] = args.epochs
    if args.learning_rate is not None:
        hyper["learning_rate"] = args.learning_rate
    if hyper:
        config["hyperparameters"] = hyper
    if "task" not in config:
        raise ValueError("name the task: --task NAME (or \"task\" in --config)")
    return config


def _event_line(event) -> str:  # a bitfit_client.JobEvent
    stamp = time.strftime("%H:%M:%S", time.localtime(event.created_at))
    return f"{stamp} {event.level:<7} {event.type:<8} {event.message}"


def submit_job(args: argparse.Namespace) -> int:
    """Upload --train (and --validation, --test) with a config; print the job (or follow it with --wait)."""
    config = _config(args)
    with _client(args) as client:
        job = client.jobs.create(config, train=args.train, validation=args.validation, test=args.test,
                                 idempotency_key=args.idempotency_key)
        print(job.id if args.wait else json.dumps(job.model_dump(), indent=2), flush=True)
        if not args.wait:
            return 0
        job = client.jobs.wait(job.id, lambda e: print(_event_line(e), flush=True))
    print(json.dumps({"id": job.id, "status": job.status, "result": job.result, "error": job.error}, indent=2))
    return 0 if job.status == "succeeded" else 1


def list_jobs(args: argparse.Namespace) -> int:
    """One line per job: id, status, task, created, progress."""
    with _client(args) as client:
        page = client.jobs.page(limit=args.limit, status=args.status, task=args.task)
    for job in page.data:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.created_at))
        progress = job.progress or {}
        step = f"epoch {progress.get('epoch')}/{progress.get('epochs')}" if progress.get("epochs") else ""
        print(f"{job.id}  {job.status:<16} {job.task:<24} {created}  {step}".rstrip())
    if page.has_more:
        print(f"(more: --limit {args.limit * 2}, or the API's after={page.next_cursor})", file=sys.stderr)
    return 0


def show_job(args: argparse.Namespace) -> int:
    """The job's record as JSON: status, progress, learning rate, metrics, result or error."""
    with _client(args) as client:
        print(json.dumps(client.jobs.get(args.job_id).model_dump(), indent=2))
    return 0


def job_logs(args: argparse.Namespace) -> int:
    """The job's events; with --follow, until the job ends (exit 1 unless it succeeded)."""
    with _client(args) as client:
        if not args.follow:
            for event in client.jobs.events(args.job_id):
                print(_event_line(event))
            return 0
        job = client.jobs.wait(args.job_id, lambda e: print(_event_line(e), flush=True))
    return 0 if job.status == "succeeded" else 1


def cancel_job(args: argparse.Namespace) -> int:
    """Cancel: a queued job ends now, a running one within seconds (nothing is published)."""
    with _client(args) as client:
        job = client.jobs.cancel(args.job_id)
    print(f"{job.id} {job.status}" + (" (cancel requested)" if job.cancel_requested and job.status == "running" else ""))
    return 0
