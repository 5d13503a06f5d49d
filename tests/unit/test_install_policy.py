"""Reproducible installs and a pinned base image (issue 28; docs/security/cluster.md).

``make venv`` (and so CI, which runs make) installs ``requirements/dev.lock.txt`` with
``--require-hashes``; every entry of both locks carries its hashes; the dev lock holds every tool
``make test``, ``make lint`` and ``make docs`` run; ``python -m infra.render`` refuses to write
deployment files while the base image's digest is the placeholder. Offline; nothing starts.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from infra import render, site  # noqa: E402

LOCKS = {name: ROOT / "requirements" / f"{name}.lock.txt" for name in ("image", "dev")}
ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)==(\S+)")
DEV_EXTRAS = ("client", "train", "serve", "tracking", "bench", "docs", "dev")


def lock_entries(text: str) -> dict[str, tuple[str, list[str]]]:
    """``{normalised name: (version, [sha256 hashes])}`` of a pip-compile lock; ValueError for
    a line that is neither an entry, its hashes, a comment nor blank."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        stripped = line.strip().rstrip("\\").strip()
        if not stripped or stripped.startswith("#"):
            continue
        if m := ENTRY.match(line):
            current = m.group(1).lower().replace("_", "-")
            entries[current] = (m.group(2), [])
        elif stripped.startswith("--hash=sha256:") and current is not None:
            digest = stripped.removeprefix("--hash=sha256:")
            assert re.fullmatch(r"[0-9a-f]{64}", digest), line
            entries[current][1].append(digest)
        else:
            raise ValueError(f"not a pinned, hashed entry: {line!r}")
    return entries


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_every_locked_package_is_pinned_with_its_hashes(name):
    entries = lock_entries(LOCKS[name].read_text())
    assert len(entries) > 100  # the whole tree, torch's CUDA wheels included
    unhashed = [pkg for pkg, (_, hashes) in entries.items() if not hashes]
    assert not unhashed, f"{name} lock: no hash for {unhashed}: run `make lock`"


def test_the_dev_lock_holds_every_tool_make_test_lint_and_docs_run():
    pins = lock_entries(LOCKS["dev"].read_text())
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = extras["dependencies"] + [
        d for k in DEV_EXTRAS for d in extras["optional-dependencies"][k]
    ]
    for dep in deps:
        req = Requirement(dep)
        if req.name == "hmss-ray":  # an extra made of other extras
            continue
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{req.name} is not in the dev lock: run `make lock`"
        assert req.specifier.contains(pins[name][0]), (
            f"dev lock {name}=={pins[name][0]} breaks {req}"
        )
    for tool in ("pytest", "ruff", "mypy", "mkdocs", "mkdocs-material", "playwright", "moto"):
        assert tool in pins, tool


def _recipe(makefile: str, target: str) -> str:
    """The rule line of ``target`` and its recipe (tab-indented lines), as text."""
    m = re.search(rf"(?m)^{re.escape(target)}:.*\n((?:\t.*\n)+)", makefile)
    assert m, f"no rule for {target} in the Makefile"
    return m.group(0)


def test_make_venv_installs_the_dev_lock_with_hashes():
    makefile = (ROOT / "Makefile").read_text()
    rule = _recipe(makefile, "$(STAMP)")
    assert "requirements/dev.lock.txt" in rule.splitlines()[0]  # a new lock reinstalls
    locked = "$(PY) -m pip install -q --require-hashes -r requirements/dev.lock.txt &&"
    project = "$(PY) -m pip install -q --no-deps --no-build-isolation -e ."
    assert locked in rule and project in rule
    # pyproject's ranges only in the branch for an interpreter the lock cannot fit
    assert rule.count("-e '.[dev]'") == 1
    fallback = rule.index("-e '.[dev]'")
    assert rule.rindex("else", 0, fallback) > rule.index(project)
    assert "$(PY) -c '$(LOCK_FITS)'" in rule and "(3, 11)" in makefile
    # every make target that runs tools depends on the venv, so CI (.ci/run -> make) is locked
    for target in ("test", "lint", "docs"):
        assert "$(STAMP)" in _recipe(makefile, target).splitlines()[0], target
    # and the dose venv is built over the locked one (its own extra on top)
    assert "$(STAMP)" in _recipe(makefile, "$(DOSE_STAMP)").splitlines()[0]
    assert "$(DOSE_STAMP)" in _recipe(makefile, "test-dose").splitlines()[0]
    assert re.findall(r"(?m)^make ([\w-]+)", (ROOT / ".ci" / "run").read_text()) == [
        "lint", "docs", "test", "test-dose"
    ]  # fmt: skip


def test_render_refuses_deployable_files_with_the_placeholder_digest(capsys):
    values = site.load_values()
    assert values["base_image_digest"] == site.PLACEHOLDER_DIGEST  # the repository's template
    before = {path: path.read_text() for path in render.rendered()}
    assert render.main([]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    base = values["base_image"]
    assert (
        f"docker buildx imagetools inspect {base} --format '{{{{json .Manifest.Digest}}}}'" in line
    )
    assert f"crane digest {base}" in line and "--allow-unpinned-image" in line
    assert {path: path.read_text() for path in before} == before  # nothing written
    pinned = {**values, "base_image_digest": "sha256:" + "ab" * 32}
    assert site.unpinned_image(pinned) is None
