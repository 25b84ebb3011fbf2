"""Tenants: API keys scoped to task-name namespaces, read from a file that holds only hashes.

The keys file (``BITFIT_KEYS_FILE``, YAML or JSON; ``bitfit keys add|list|revoke`` writes it):

    keys:
      - name: acme-predict      # a label, for `bitfit keys list` / `revoke`
        sha256: 5e884898...     # sha256 of the key (hex); the key itself is never stored
        scopes: [predict]       # predict and/or admin
        tasks: ["acme.*"]       # namespaces ("acme.*"), exact names, or "*" (every task)

A key is 32 random bytes (``bitfit keys add``), so one sha256 hides it: a slow password hash
guards guessable secrets, and a 256-bit key is not guessable. A presented key is hashed
once and compared with every entry in constant time (no early exit). The file is re-read
when it changes (checked at most once a second), so adding or revoking a key needs no
restart; a file that stops parsing keeps the last good keys and logs an ERROR.

Task names take one "." as the namespace separator (bias_store/validate.py): the task
``acme.sentiment`` is stored in the folder ``tasks/acme.sentiment``. A key scoped to
``acme.*`` sees only those tasks: any other name answers exactly as an unknown task does
(404 with the hint of known tasks filtered to the key's scope), and listings leave it out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from bias_store.errors import TaskNotFound
from engine.errors import UnknownTask
from server.process.settings import Settings

log = logging.getLogger(__name__)

ROLES = ("predict", "admin")
_PATTERN = re.compile(r"\*|[a-z0-9][a-z0-9_.-]*\*?")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Scope:
    """The tasks a key may see: ``prefixes`` None = every task."""

    prefixes: tuple[str, ...] | None
    names: frozenset[str] = frozenset()  # exact names, beside the prefixes

    def allows(self, task: str) -> bool:
        if self.prefixes is None:
            return True
        return task in self.names or task.startswith(self.prefixes)

    @property
    def restricted(self) -> bool:
        return self.prefixes is not None


ALL = Scope(None)


def scope_of_patterns(patterns: list[str]) -> Scope:
    """``["acme.*", "shared"]`` -> the scope; ``"*"`` anywhere = every task."""
    if "*" in patterns:
        return ALL
    return Scope(tuple(p[:-1] for p in patterns if p.endswith("*")), frozenset(p for p in patterns if not p.endswith("*")))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class KeyEntry:
    name: str
    digest: bytes  # sha256 of the key
    roles: frozenset[str]  # of ROLES
    scope: Scope
    tasks: tuple[str, ...]  # the patterns, as written


def parse_entries(document: object) -> list[KeyEntry]:
    """The ``keys`` of a parsed keys file; ValueError naming the entry (never a hash) otherwise."""
    items = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise ValueError("the file must hold a mapping with a 'keys' list")
    entries, names = [], set()
    for n, item in enumerate(items):
        where = f"keys[{n}]"
        if not isinstance(item, dict) or set(item) - {"name", "sha256", "scopes", "tasks"}:
            raise ValueError(f"{where}: needs exactly name, sha256, scopes, tasks")
        name, digest, roles, tasks = item.get("name"), item.get("sha256"), item.get("scopes"), item.get("tasks")
        if not isinstance(name, str) or not name or name in names:
            raise ValueError(f"{where}: 'name' must be a non-empty string, unique in the file")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ValueError(f"{where} ({name}): 'sha256' must be 64 lowercase hex digits (the key's sha256)")
        if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
            raise ValueError(f"{where} ({name}): 'scopes' must list predict and/or admin")
        if not isinstance(tasks, list) or not tasks or any(not isinstance(t, str) or not _PATTERN.fullmatch(t) for t in tasks):
            raise ValueError(f"{where} ({name}): 'tasks' must list task names, namespaces such as 'acme.*', or '*'")
        names.add(name)
        entries.append(KeyEntry(name, bytes.fromhex(digest), frozenset(roles), scope_of_patterns(tasks), tuple(tasks)))
    return entries


def read_document(path: Path) -> object:
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


class KeysFile:
    """The keys file, re-read when it changes. Construction raises ValueError/OSError when it
    cannot be read (the server does not start); later failures keep the last good keys."""

    def __init__(self, path: Path, check_every_s: float = 1.0) -> None:
        self.path, self.check_every_s = Path(path), check_every_s
        self._stamp = self._stat()
        self.entries = parse_entries(read_document(self.path))
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.check_every_s:
            return
        self._checked = now
        stamp = self._stat()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self.entries = parse_entries(read_document(self.path))
            log.info("keys file %s re-read: %d keys", self.path.name, len(self.entries))
        except (OSError, ValueError, yaml.YAMLError) as exc:
            log.error("keys file %s could not be re-read (%s); the previous keys stay in force", self.path.name, exc)

    def match(self, token: str, roles: frozenset[str]) -> KeyEntry | None:
        """The entry whose key is ``token`` and that grants one of ``roles`` (every entry compared)."""
        self._refresh()
        given = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found = None
        for entry in self.entries:
            if hmac.compare_digest(given, entry.digest) and entry.roles & roles:
                found = entry
        return found


def scope_hidden(exc: Exception, scope: Scope, in_scope: Callable[[Scope], list[str]]) -> Exception:
    """An unknown-task error as a scoped key must see it: its hint (``known``, also in the
    message) rebuilt from ``in_scope(scope)`` (a few of the key's own tasks), so that it says
    nothing of other tenants."""
    if not scope.restricted or not isinstance(exc, (UnknownTask, TaskNotFound)):
        return exc
    return type(exc)(exc.name, in_scope(scope))


def open_keys_file(settings: Settings) -> KeysFile | None:
    """The settings' keys file, or None; a file that cannot be read stops the start, naming it."""
    if settings.keys_file is None:
        return None
    try:
        keys = KeysFile(settings.keys_file)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"BITFIT_KEYS_FILE {settings.keys_file}: {exc}") from None
    if not settings.metrics_api_keys:
        log.warning("BITFIT_KEYS_FILE is set but /metrics is open, and its labels name tasks: set BITFIT_METRICS_API_KEYS")
    return keys
