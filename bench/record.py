"""Writing a benchmark's result into its block of docs/performance.md."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


def record(name: str, text: str) -> None:
    """Replace the block between `<!-- {name}:start -->` and `:end -->` (or append one)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    doc = DOC.read_text()
    block = f"{start}\n{text}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    DOC.write_text(pattern.sub(lambda _m: block, doc) if pattern.search(doc) else doc + block)
