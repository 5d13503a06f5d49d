"""The benchmark pages of the documentation site, one per ``bench/results/*.json``.

Any JSON there becomes a page: its ``command``, ``date`` and ``machine`` (required of every
bench), then ``summary``, ``tables`` (``[{"title", "columns", "rows", "note"}]``) and every other
figure it holds, flattened; ``benchmarks/index.md`` lists them all. Used by ``gen_docs.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _cell(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text.replace("|", "\\|").replace("\n", " ")


def _flat(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flat(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, item in enumerate(value):
            yield from _flat(item, f"{prefix}[{i}]")
    else:
        yield prefix, value


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> list[str]:
    out = [f"### {title}", ""] if title else []
    out += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def bench_page(name: str, data: dict[str, Any]) -> str:
    """A benchmark's JSON as a page: what ran, when, where, and its figures."""
    out = [f"# {data.get('title', name)}", ""]
    if data.get("source"):
        out += [f"**Source**: {data['source']}", ""]
    out += ["**Command**:", "", "```bash", str(data.get("command", "(not recorded)")), "```", ""]
    out += [f"**Date**: {data.get('date', '(not recorded)')}", ""]
    machine = data.get("machine", "(not recorded)")
    if isinstance(machine, dict):
        out += ["**Machine**:", ""]
        out += _table("", ["fact", "value"], [[k, v] for k, v in _flat(machine)])
    else:
        out += [f"**Machine**: {machine}", ""]
    if data.get("summary"):
        out += [str(data["summary"]), ""]
    out += ["## Figures", ""]
    for table in data.get("tables", []):
        out += _table(table.get("title", ""), table["columns"], table["rows"])
        if table.get("note"):
            out += [str(table["note"]), ""]
    shown = {"title", "source", "command", "date", "machine", "summary", "tables", "notes"}
    rest = [[k, v] for k, v in _flat({k: v for k, v in data.items() if k not in shown})]
    if rest:
        out += _table("Every figure in the JSON", ["key", "value"], rest[:400])
    if data.get("notes"):
        out += ["## Notes", "", str(data["notes"]), ""]
    out += [f"From `bench/results/{name}.json`; the bench's own module is `bench/{name}.py`.", ""]
    return "\n".join(out)


def bench_pages(results: Path) -> dict[str, str]:
    pages: dict[str, str] = {}
    index = [
        "# Benchmarks",
        "",
        "One page per JSON file in `bench/results/`, generated at build time: a figure has one "
        "source. Each bench compares against a baseline measured in the same run, so read the "
        "ratios; absolute times are the machine's. How to run them: `CONTRIBUTING.md` in the "
        "repository and `python -m bench.<name> --help`.",
        "",
        "| bench | date | machine | source |",
        "|---|---|---|---|",
    ]
    for path in sorted(results.glob("*.json")):
        data = json.loads(path.read_text())
        pages[f"benchmarks/{path.stem}.md"] = bench_page(path.stem, data)
        machine = data.get("machine", "")
        if isinstance(machine, dict):
            machine = machine.get("description") or machine.get("cpu") or "see page"
        source = data.get("source", "a run of the bench")
        index.append(f"| [{path.stem}]({path.stem}.md) | {data.get('date', '')} | "
                     f"{_cell(machine)} | {_cell(source)} |")  # fmt: skip
    pages["benchmarks/index.md"] = "\n".join(index) + "\n"
    return pages
