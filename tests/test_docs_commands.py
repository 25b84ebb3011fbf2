"""Commands in the docs read as README's quick start does: `.venv/bin/bitfit`, run from a checkout."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```.*?$(.*?)^```", re.S | re.M)


def test_doc_command_blocks_run_bitfit_from_the_checkouts_venv():
    bare = [
        f"{doc.relative_to(ROOT)}: {line.strip()}"
        for doc in DOCS
        for block in FENCE.findall(doc.read_text())
        for line in block.splitlines()
        if re.match(r"\s*(\$\s*)?bitfit\s", line)
    ]
    assert not bare, "use .venv/bin/bitfit (as README does) in:\n" + "\n".join(bare)


def test_operations_says_every_setting_is_a_flag():
    text = (ROOT / "docs" / "OPERATIONS.md").read_text()
    assert "Every setting is a `BITFIT_*` environment variable and a flag" in text
    assert not re.search(r"the (seven|eleven|\d+) above are also flags", text)
