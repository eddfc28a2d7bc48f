"""The outcome of each check and the report printed from them."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.text import Text


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check; a skipped check counts as passed."""

    name: str
    ok: bool
    detail: str
    skipped: bool = False


def all_passed(results: list[CheckResult]) -> bool:
    return all(result.ok for result in results)


def render(results: list[CheckResult], console: Console) -> None:
    """One ✓/✗ line per check with its detail, then the totals."""
    for result in results:
        line = Text()
        if result.skipped:
            line.append("○ ", style="yellow")
        elif result.ok:
            line.append("✓ ", style="green")
        else:
            line.append("✗ ", style="bold red")
        line.append(result.name, style="bold")
        line.append(": ")
        line.append(result.detail, style="dim" if result.skipped else "")
        console.print(line, soft_wrap=True)
    passed = sum(1 for r in results if r.ok and not r.skipped)
    failed = sum(1 for r in results if not r.ok)
    skipped = sum(1 for r in results if r.skipped)
    summary = Text(f"{passed} passed, {failed} failed", style="bold green" if not failed else "")
    if failed:
        summary.stylize("bold red")
    if skipped:
        summary.append(f", {skipped} skipped")
    console.print(summary)
