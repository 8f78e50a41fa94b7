"""Shared CLI helpers: consoles, JSON output, tables."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def print_json(obj: Any) -> None:
    """Print machine-readable JSON to stdout (no rich markup).

    A lone surrogate (a store written before mindgap refused them) is printed as its JSON
    escape instead of crashing the UTF-8 encoder.
    """
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(obj, indent=2, ensure_ascii=True, default=str)
    print(text)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """A rich table with the given columns (numbers right-aligned)."""
    t = Table(title=title, show_lines=False)
    for c in columns:
        t.add_column(c, justify="right" if c.lower() in {"rank", "k", "score", "cosine", "n"} else "left")
    for r in rows:
        t.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in r])
    return t
