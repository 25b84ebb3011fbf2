"""List Python modules over 300 lines and functions over 60 lines (the house limits).

A module may run longer, up to 450 lines, when splitting it would scatter one concept: it
says so in a ``# size: <why this is one concept>`` line among its first 40 lines. Prefer
fewer, whole files to confetti; the function limit has no exception.

    python tools/check_sizes.py [--max-module 300] [--max-function 60] [PATH ...]

Prints one line per finding and exits 1 when there is any. Lines are counted as in the
file (blank lines and comments included); a function's length is from its ``def`` (or
first decorator) to its last line. tests/test_sizes.py runs the same check in CI.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bias_store", "engine", "server", "training", "bench", "tests", "tools", "clients", "examples", "docker")
MAX_MODULE, MAX_FUNCTION = 300, 60
MAX_ONE_CONCEPT = 450  # a module that declares `# size: <why>` (one concept, not two jobs)


@dataclass(frozen=True)
class Finding:
    path: str  # relative to the repository root when inside it
    lines: int
    limit: int
    function: str | None = None  # None: the module itself is too long
    line: int | None = None  # where the function's ``def`` is

    def __str__(self) -> str:
        if self.function is None:
            return f"{self.path}: module has {self.lines} lines (> {self.limit})"
        return f"{self.path}:{self.line}: function {self.function} has {self.lines} lines (> {self.limit})"


def findings(path: Path, max_module: int = MAX_MODULE, max_function: int = MAX_FUNCTION) -> list[Finding]:
    text = path.read_text()
    out = []
    lines = len(text.splitlines())
    rel = str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    limit = MAX_ONE_CONCEPT if any(line.startswith("# size: ") and len(line) > 12 for line in text.splitlines()[:40]) else max_module
    if lines > limit:
        out.append(Finding(rel, lines, limit))
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = node.end_lineno - start + 1
            if length > max_function:
                out.append(Finding(rel, length, max_function, node.name, node.lineno))
    return out


def python_files(paths: list[Path]) -> list[Path]:
    return sorted(f for p in paths for f in ([p] if p.is_file() else p.rglob("*.py")))


def check(paths: list[Path] | None = None, max_module: int = MAX_MODULE, max_function: int = MAX_FUNCTION) -> list[Finding]:
    """Every finding in ``paths`` (default: the repository's packages)."""
    files = python_files(paths or [ROOT / p for p in PACKAGES])
    return [finding for f in files for finding in findings(f, max_module, max_function)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-module", type=int, default=MAX_MODULE)
    parser.add_argument("--max-function", type=int, default=MAX_FUNCTION)
    parser.add_argument("paths", nargs="*", type=Path, default=[ROOT / p for p in PACKAGES])
    args = parser.parse_args(argv)
    report = check(args.paths, args.max_module, args.max_function)
    print("\n".join(map(str, report)) if report else f"{len(python_files(args.paths))} files within the limits")
    return 1 if report else 0


if __name__ == "__main__":
    sys.exit(main())
