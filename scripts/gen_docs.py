"""The generated pages of the documentation site: config keys, commands, HTTP API, benchmarks.

Every figure and every option has one source, and these pages are made from it at build time:

- ``reference/config.md``: every key of ``ExperimentConfig`` with its type, default, allowed values
  (the enum's choices and the checks in the section's ``__post_init__``) and meaning (the comment on
  or above the field in ``hmss_ray/config/*.py``);
- ``reference/cli.md``: every command's ``--help``, from its own argparse parser;
- ``reference/http-api.md`` and ``reference/openapi.json``: the endpoint's OpenAPI schema
  (``hmss_ray.serving.app.app.openapi()``);
- ``benchmarks/<name>.md`` and ``benchmarks/index.md``: one page per ``bench/results/*.json``
  (command, date, machine, tables), whichever files are there.

``mkdocs build`` runs this file through the mkdocs-gen-files plugin (the pages exist only in the
build); ``python scripts/gen_docs.py --out DIR`` writes them to a folder instead.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import enum
import importlib
import io
import json
import sys
import tokenize
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from docgen_bench import bench_pages  # noqa: E402  (beside this file)

# command -> module whose main(argv) parses its arguments (`python -m <module>`)
STAGES = {
    "phantom": "hmss_ray.phantom",
    "prepare": "hmss_ray.prepare",
    "train": "hmss_ray.train.__main__",
    "tune": "hmss_ray.tune.__main__",
    "inference": "hmss_ray.inference.__main__",
    "serving": "hmss_ray.serving.__main__",
    "client": "hmss_ray.client",
    "evaluate": "hmss_ray.evaluate.__main__",
    "demo": "hmss_ray.demo",
}
CHECKS = {  # Section helpers of hmss_ray.config.tree -> what they allow
    "positive": "> 0",
    "non_negative": ">= 0",
    "probability": "in [0, 1]",
}


# ---- config keys -------------------------------------------------------------------------------


def _field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}``: the comment on a field's line, else the comment lines right above."""
    source = Path(sys.modules[cls.__module__].__file__ or "").read_text()
    tree = ast.parse(source)
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if not text.startswith(("fmt:", "noqa")):
                comments[tok.start[0]] = text
    lines = source.splitlines()
    found: dict[str, str] = {}
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        text = comments.get(stmt.lineno, "")
        if not text:
            above, line = [], stmt.lineno - 1
            while line in comments and lines[line - 1].strip().startswith("#"):
                above.insert(0, comments[line])
                line -= 1
            text = " ".join(above)
        found[stmt.target.id] = text
    return found


def _message(node: ast.expr, namespace: dict[str, Any]) -> str:
    """The text of a check's message: a string, or an f-string with what can be evaluated."""
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            else:
                expr = ast.unparse(value.value)  # type: ignore[attr-defined]
                try:
                    parts.append(str(eval(expr, dict(namespace))))  # module constants only
                except Exception:
                    parts.append(f"<{expr}>")
        return "".join(parts)
    return ast.unparse(node)


def _range_checks(cls: type) -> dict[str, list[str]]:
    """``{field: [what it allows]}`` from the calls in the section's ``__post_init__``."""
    module = sys.modules[cls.__module__]
    tree = ast.parse(Path(module.__file__ or "").read_text())
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    checks: dict[str, list[str]] = {}
    for call in ast.walk(node):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
            continue
        if not (isinstance(call.func.value, ast.Name) and call.func.value.id == "self"):
            continue
        name, args = call.func.attr, call.args
        keys = [a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if name == "require" and len(args) == 3 and keys:
            checks.setdefault(keys[0], []).append(_message(args[2], vars(module)))
        elif name in CHECKS:
            for key in keys:
                checks.setdefault(key, []).append(CHECKS[name])
        elif name in ("at_least", "optional_at_least") and args:
            low = ast.unparse(args[0])
            text = f">= {low}" if name == "at_least" else f"null or >= {low}"
            for key in keys:
                checks.setdefault(key, []).append(text)
    return checks


def _cell(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text.replace("|", "\\|").replace("\n", " ")


def _type_name(annotation: Any) -> str:
    return str(annotation).replace("typing.", "").replace("|", "or")


def _enum_of(cls: type, name: str) -> type[enum.Enum] | None:
    hints = typing.get_type_hints(cls)
    hint = hints.get(name)
    return hint if isinstance(hint, type) and issubclass(hint, enum.Enum) else None


def config_keys() -> list[dict[str, str]]:
    """One row per dotted key: key, type, default, allowed, meaning (and its section's doc)."""
    from hmss_ray.config import ExperimentConfig
    from hmss_ray.config.tree import to_plain

    defaults = ExperimentConfig()
    rows = []
    for section in dataclasses.fields(ExperimentConfig):
        cls = type(getattr(defaults, section.name))
        if not dataclasses.is_dataclass(cls):
            continue
        comments, checks = _field_comments(cls), _range_checks(cls)
        for f in dataclasses.fields(cls):
            choices = _enum_of(cls, f.name)
            allowed = [", ".join(f"`{m.value}`" for m in choices)] if choices else []
            allowed += [f"{c}" for c in checks.get(f.name, [])]
            default = to_plain(getattr(getattr(defaults, section.name), f.name))
            rows.append(
                {
                    "section": section.name,
                    "section_doc": (cls.__doc__ or "").strip().split("\n\n")[0],
                    "key": f"{section.name}.{f.name}",
                    "type": _type_name(f.type),
                    "default": _cell(default),
                    "allowed": "; ".join(allowed),
                    "meaning": comments.get(f.name, ""),
                }
            )
    return rows


def config_page() -> str:
    rows = config_keys()
    out = [
        "# Configuration keys",
        "",
        "Generated from the config classes in `hmss_ray/config/` by `scripts/gen_docs.py`: the "
        "default, what the section's checks allow, and the comment beside the field. Set any key "
        "in a YAML file (`--config`) or on the command line (`--set section.key=value`, values "
        "parsed as YAML); an unknown key or a value out of range stops with an error naming it. "
        "How the keys are used: [Getting started](../getting-started.md#configuration).",
    ]
    section = None
    for row in rows:
        if row["section"] != section:
            section = row["section"]
            out += ["", f"## `{section}`", ""]
            if row["section_doc"]:
                out += [" ".join(row["section_doc"].split()), ""]
            out += ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        cells = [f"`{row['key']}`", f"`{row['type']}`", f"`{row['default']}`"]
        cells += [_cell(row["allowed"]) or "any", _cell(row["meaning"])]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


# ---- commands ----------------------------------------------------------------------------------


def command_help(module_name: str) -> str:
    """What ``python -m <module> --help`` prints, from the module's own parser, in-process."""
    module = importlib.import_module(module_name)
    main: Callable[[list[str]], int] = module.main
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
        main(["--help"])
    return buffer.getvalue().rstrip()


def cli_page() -> str:
    out = [
        "# Commands",
        "",
        "Generated from each command's argparse parser by `scripts/gen_docs.py`. Every stage runs "
        "as `hmss-ray <stage>` or, equivalently, `python -m hmss_ray.<stage>`; every command that "
        "takes an experiment config takes `--config FILE` and repeatable `--set KEY=VALUE` "
        "([config keys](config.md)). A mistake in what you typed is one `error:` line and exit "
        "status 2.",
    ]
    for stage, module in STAGES.items():
        out += ["", f"## {stage}", "", "```text", command_help(module), "```"]
    return "\n".join(out) + "\n"


# ---- HTTP API ----------------------------------------------------------------------------------


def openapi() -> dict[str, Any]:
    from hmss_ray.serving.app import app

    return app.openapi()


def http_page(schema: dict[str, Any]) -> str:
    out = [
        f"# HTTP API ({schema['info']['title']}, version {schema['info']['version']})",
        "",
        "Generated from the endpoint's OpenAPI schema (`hmss_ray.serving.app`), the same one a "
        "running endpoint serves at `/openapi.json` and `/docs`; the full schema is "
        "[openapi.json](openapi.json). Formats, errors and limits: [Serving](../serving.md).",
        "",
        " ".join(schema["info"].get("description", "").split()),
    ]
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            out += ["", f"## `{method.upper()} {path}`", ""]
            text = op.get("description") or op.get("summary") or ""
            out += [" ".join(line.strip() for line in text.splitlines()), ""]
            params = op.get("parameters", [])
            if params:
                out += [
                    "| parameter | in | required | type | description |",
                    "|---|---|---|---|---|",
                ]
                for p in params:
                    kind = p.get("schema", {}).get("type", "")
                    cells = [f"`{p['name']}`", p.get("in", ""), str(p.get("required", False))]
                    cells += [kind, _cell(p.get("description", ""))]
                    out.append("| " + " | ".join(cells) + " |")
                out.append("")
            responses = op.get("responses", {})
            if responses:
                out += ["| status | description |", "|---|---|"]
                out += [
                    f"| {code} | {_cell(r.get('description', ''))} |"
                    for code, r in responses.items()
                ]
    return "\n".join(out) + "\n"


# ---- all pages ---------------------------------------------------------------------------------


def pages() -> dict[str, str]:
    """``{path under docs/: Markdown}`` of every generated page."""
    schema = openapi()
    found = {
        "reference/config.md": config_page(),
        "reference/cli.md": cli_page(),
        "reference/http-api.md": http_page(schema),
        "reference/openapi.json": json.dumps(schema, indent=2) + "\n",
    }
    found.update(bench_pages(ROOT / "bench" / "results"))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="site-src", help="folder to write the pages into")
    out = Path(parser.parse_args(argv).out)
    written = pages()
    for name, text in written.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    print(f"wrote {len(written)} page(s) under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
elif __name__ == "<run_path>":  # run by the mkdocs-gen-files plugin during `mkdocs build`
    import mkdocs_gen_files

    for _name, _text in pages().items():
        with mkdocs_gen_files.open(_name, "w") as _file:
            _file.write(_text)
