"""The documentation says what the code does: commands, config keys, demo paths, a strict build.

What a newcomer would notice: a command of the getting-started page that does not parse, a
config key the docs name that the config refuses, a demo output the docs point at that the demo
never writes, a README that grew back into a notebook, a site that no longer builds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hmss_ray.config import ExperimentConfig, flatten

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
# `hmss-ray <stage>` -> the module `python -m` runs (the same parser)
MODULES = {
    "phantom": "hmss_ray.phantom",
    "prepare": "hmss_ray.prepare",
    "train": "hmss_ray.train.__main__",
    "tune": "hmss_ray.tune.__main__",
    "predict": "hmss_ray.inference.__main__",
    "serve": "hmss_ray.serving.__main__",
    "request": "hmss_ray.client",
    "evaluate": "hmss_ray.evaluate.__main__",
    "demo": "hmss_ray.demo",
}
SECTIONS = [f.name for f in dataclasses.fields(ExperimentConfig) if f.name != "name"]
# `section.key`, `section.key.sub` (a dict field) or `section.prefix*`, not part of a dotted path
KEY = re.compile(
    rf"(?<![\w./$-])({'|'.join(SECTIONS)})\.([a-z_][a-z0-9_]*\*?)((?:\.[A-Za-z_<>]+)*)"
)
NOT_KEYS = {"py", "yaml", "yml", "json", "md", "csv", "png", "safetensors", "gz", "nii", "db"}


def shell_commands(page: Path, program: str = "hmss-ray") -> list[list[str]]:
    """The ``program ...`` lines of a page's bash code blocks, continuations joined, as argv."""
    text = page.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(f"{program} "):
                commands.append(shlex.split(line)[1:])
    return commands


def help_of(stage: str) -> tuple[int, str]:
    """Exit status and output of ``hmss-ray <stage> --help``, through the stage's own parser."""
    module = importlib.import_module(MODULES[stage])
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out):
        try:
            code = module.main(["--help"])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue()


def test_readme_is_a_door_not_a_notebook():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; the limit is 250"
    text = "\n".join(lines)
    for must in ("not the output of a medical device", "No trained model is shipped"):
        assert must in text, f"README.md no longer says: {must!r}"


GETTING_STARTED = shell_commands(DOCS / "getting-started.md")


def test_getting_started_shows_every_stage():
    shown = {argv[0] for argv in GETTING_STARTED}
    assert set(MODULES) - {"demo"} <= shown


@pytest.mark.parametrize(
    "argv", GETTING_STARTED + shell_commands(ROOT / "README.md"), ids=lambda a: " ".join(a[:2])
)
def test_every_command_shown_parses_with_the_options_it_uses(argv):
    stage, args = argv[0], argv[1:]
    assert stage in MODULES, f"hmss-ray {stage}: no such stage"
    code, text = help_of(stage)
    assert code == 0, f"hmss-ray {stage} --help exited {code}"
    for option in (a.split("=")[0] for a in args if a.startswith("-")):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (
            f"hmss-ray {stage} has no option {option} (its --help: {text[:300]})"
        )
    for value in args:  # repository files the command names must be there
        if value.startswith(("configs/", "tune_spaces/", "serve/")):
            assert (ROOT / value).is_file(), f"hmss-ray {stage}: {value} does not exist"


def config_keys_named(path: Path) -> set[str]:
    keys = set()
    for span in re.findall(r"`([^`\n]+)`", path.read_text()):
        for section, key, rest in KEY.findall(span):
            if key not in NOT_KEYS:
                keys.add(f"{section}.{key}{rest}")
    return keys


def test_every_config_key_the_docs_name_exists():
    known = set(flatten(ExperimentConfig().to_dict()))
    dict_fields = {k.rsplit(".", 1)[0] for k in known if k.count(".") > 1}  # data.spacing.<r>
    missing = {}
    for page in [*PAGES, ROOT / "README.md"]:
        for key in config_keys_named(page):
            base = ".".join(key.split(".")[:2])
            if key in known or base in known or base in dict_fields:
                continue
            if base.endswith("*") and any(k.startswith(base[:-1]) for k in known):
                continue  # `tune.mlflow_*`
            missing.setdefault(str(page.relative_to(ROOT)), []).append(key)
    assert not missing, f"config keys the docs name but the config does not have: {missing}"


def demo_layout() -> tuple[set[str], set[str]]:
    """What ``hmss_ray/demo.py`` writes under its ``--out``: top-level names, and the search's
    and registry entry's folders (read from its source, not by running it)."""
    source = (ROOT / "hmss_ray" / "demo.py").read_text()
    top = set(re.findall(r'out / "([\w.]+)"', source))
    top |= set(re.findall(r"\{out\}/([\w.]+)", source))
    nested = {f"{a}/{b}" for a, b in re.findall(r'out / "(\w+)" / "(\w+)"', source)}
    return top, nested


def test_demo_paths_the_docs_name_are_what_the_demo_writes():
    top, nested = demo_layout()
    assert {"phantom", "shards", "tune", "registry", "served_sct", "report", "mlflow.db"} <= top
    assert {"tune/demo", "registry/demo"} <= nested
    evaluate = "".join(p.read_text() for p in (ROOT / "hmss_ray" / "evaluate").glob("*.py"))
    wrong = []
    for page in [DOCS / "getting-started.md", ROOT / "README.md", *PAGES]:
        for path in set(re.findall(r"outputs/demo/([\w./*-]+)", page.read_text())):
            parts = path.rstrip("/.").split("/")
            deeper = parts[1] if len(parts) > 1 else None
            known = parts[0] in top
            if deeper and parts[0] in ("tune", "registry"):
                known = f"{parts[0]}/{deeper}" in nested
            elif deeper and parts[0] == "report" and "*" not in deeper:
                known = deeper in evaluate  # the report's files are named by evaluate/
            if not known:
                wrong.append(f"{page.name}: outputs/demo/{path}")
    assert not wrong, f"paths the demo never writes: {wrong}"


def test_every_config_key_has_a_meaning_for_the_reference_page():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        gen_docs = importlib.import_module("gen_docs")
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    rows = gen_docs.config_keys()
    sections = [getattr(ExperimentConfig(), name) for name in SECTIONS]
    fields = {f"{s.SECTION}.{f.name}" for s in sections for f in dataclasses.fields(s)}
    assert {row["key"] for row in rows} == fields
    silent = [row["key"] for row in rows if not row["meaning"]]
    assert not silent, f"add a comment on (or above) these fields in hmss_ray/config: {silent}"
    by_key = {row["key"]: row for row in rows}
    assert "[0, 1)" in by_key["data.max_body_loss"]["allowed"]  # from its __post_init__
    assert "`lsgan`" in by_key["loss.adversarial"]["allowed"]  # the enum's choices


def test_every_benchmark_result_says_what_ran_when_and_where():
    results = sorted((ROOT / "bench" / "results").glob("*.json"))
    assert results
    for path in results:
        data = json.loads(path.read_text())
        missing = [k for k in ("command", "date", "machine") if not data.get(k)]
        assert not missing, f"{path.name} lacks {missing}"


def test_the_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs_gen_files")
    pytest.importorskip("material")
    env = {**os.environ, "DISABLE_MKDOCS_2_WARNING": "true", "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    config_page = (tmp_path / "site" / "reference" / "config" / "index.html").read_text()
    assert "data.max_body_loss" in config_page
    assert (tmp_path / "site" / "benchmarks" / "serve_latency" / "index.html").is_file()


def console_errors(page: Path) -> list[tuple[list[str], str]]:
    """``$ hmss-ray ...`` lines of a page's console blocks followed by an ``error:`` line."""
    pairs = []
    for block in re.findall(r"```console\n(.*?)```", page.read_text(), re.S):
        lines = block.splitlines()
        for command, answer in itertools.pairwise(lines):
            if command.startswith("$ hmss-ray ") and answer.startswith("error: "):
                pairs.append((shlex.split(command[2:])[1:], answer))
    return pairs


@pytest.mark.parametrize("argv, expected", console_errors(DOCS / "getting-started.md"))
def test_the_errors_shown_are_what_the_command_prints(argv, expected):
    module = importlib.import_module(MODULES[argv[0]])
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.suppress(SystemExit):
        code = module.main(argv[1:])
    assert code == 2
    shown = expected.split("...")[0].rstrip(", ")
    assert err.getvalue().startswith(shown), err.getvalue()
