"""List Python modules over 300 lines and functions over 60 lines (the house limits).

    python tools/check_sizes.py [--max-module 300] [--max-function 60] [PATH ...]

Prints one line per finding and exits 1 when there is any. Lines are counted as in the
file (blank lines and comments included); a function's length is from its ``def`` (or
first decorator) to its last line.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bias_store", "engine", "server", "training", "bench", "tests", "tools")


def findings(path: Path, max_module: int, max_function: int) -> list[str]:
    text = path.read_text()
    out = []
    lines = len(text.splitlines())
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    if lines > max_module:
        out.append(f"{rel}: module has {lines} lines (> {max_module})")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = node.end_lineno - start + 1
            if length > max_function:
                out.append(f"{rel}:{node.lineno}: function {node.name} has {length} lines (> {max_function})")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-module", type=int, default=300)
    parser.add_argument("--max-function", type=int, default=60)
    parser.add_argument("paths", nargs="*", type=Path, default=[ROOT / p for p in PACKAGES])
    args = parser.parse_args(argv)
    files = sorted(f for p in args.paths for f in ([p] if p.is_file() else p.rglob("*.py")))
    report = [line for f in files for line in findings(f, args.max_module, args.max_function)]
    print("\n".join(report) if report else f"{len(files)} files within the limits")
    return 1 if report else 0


if __name__ == "__main__":
    sys.exit(main())
