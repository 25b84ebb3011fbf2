"""``bitfit keys add|list|revoke``: the scoped keys file (BITFIT_KEYS_FILE) of a server.

``add`` makes a key (32 random bytes), prints it once and stores only its sha256; a running
server re-reads the file within a second (server/http/tenancy.py). The file is replaced
atomically (temp file, fsync, rename), mode 0600, under a lock beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROLES = ("predict", "admin")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--file", type=Path, default=os.environ.get("BITFIT_KEYS_FILE"),
        help="the keys file, YAML or JSON by its suffix (default: BITFIT_KEYS_FILE)",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="make a key, print it once, store its hash")
    add.add_argument("name", help="a label for the key (unique in the file)")
    add.add_argument("--scope", action="append", choices=ROLES, required=True, help="predict and/or admin (repeatable)")
    add.add_argument("--tasks", action="append", required=True, metavar="PATTERN",
                     help="task names, namespaces such as 'acme.*', or '*' for every task (repeatable)")
    sub.add_parser("list", help="the keys: name, scopes, tasks, the start of the hash")
    revoke = sub.add_parser("revoke", help="remove a key (a running server drops it within a second)")
    revoke.add_argument("name")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _read(path: Path) -> dict:
    from server.http.tenancy import read_document

    return read_document(path) if path.exists() else {"keys": []}


def _write(path: Path, document: dict) -> None:
    import yaml

    from server.http.tenancy import parse_entries

    parse_entries(document)  # never write a file the server would refuse
    text = json.dumps(document, indent=2) + "\n" if path.suffix == ".json" else yaml.safe_dump(document, sort_keys=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def run(args: argparse.Namespace) -> int:
    from server.http.tenancy import hash_key

    if args.file is None:
        print("bitfit keys: name the keys file with --file or BITFIT_KEYS_FILE", file=sys.stderr)
        return 2
    path: Path = args.file
    try:
        with _locked(path):
            document = _read(path)
            keys = document.setdefault("keys", [])
            if args.action == "list":
                for entry in keys:
                    print(f"{entry['name']}\t{','.join(entry['scopes'])}\t{','.join(entry['tasks'])}\tsha256:{entry['sha256'][:12]}…")
                return 0
            if args.action == "revoke":
                kept = [entry for entry in keys if entry.get("name") != args.name]
                if len(kept) == len(keys):
                    print(f"bitfit keys: no key named {args.name!r} in {path}", file=sys.stderr)
                    return 1
                _write(path, {**document, "keys": kept})
                print(f"revoked {args.name}", file=sys.stderr)
                return 0
            key = secrets.token_hex(32)
            keys.append({"name": args.name, "sha256": hash_key(key), "scopes": sorted(set(args.scope)), "tasks": args.tasks})
            _write(path, document)
    except (OSError, ValueError) as exc:
        print(f"bitfit keys: {path}: {exc}", file=sys.stderr)
        return 1
    print(key)  # the only time the key is shown: the file holds its hash
    print(f"added {args.name}: give this key to its holder now; it is not stored", file=sys.stderr)
    return 0
