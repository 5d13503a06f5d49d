"""What an install gives a user: the wheel alone (outside the checkout) runs ``hmss-ray`` and
finds its configs; the ``client`` extra works without torch and Ray; ``import hmss_ray`` is
light."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "ray", "torchvision", "monai", "fastapi", "starlette", "scipy", "pandas",
         "pyarrow", "matplotlib", "optuna", "skimage")  # fmt: skip
BLOCKER = f"""
import importlib.abc, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {HEAVY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
sys.meta_path.insert(0, Blocker())
"""


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code)],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_client_extra_runs_without_torch_or_ray(tmp_path):
    """``hmss-ray request`` reads the MR (MetaImage: re-encoded), posts it and reports a server
    it cannot reach, with none of the train/serve libraries importable."""
    import numpy as np

    from hmss_ray.io import Volume, write_volume

    write_volume(Volume(np.ones((8, 8, 4), np.int16), np.eye(4)), tmp_path / "mr.mhd")
    done = _python(
        """
        import hmss_ray.client, hmss_ray.serving.client
        from hmss_ray import Volume, read_volume, write_volume
        from hmss_ray.stages import main
        code = main(["request", "-i", "mr.mhd", "-o", "sct.nii.gz", "--url", "http://127.0.0.1:9"])
        print("exit", code)
        print("train", main(["train", "--shards", "s"]))
        """,
        tmp_path,
    )
    assert "exit 3" in done.stdout, done.stderr
    assert "error: cannot reach http://127.0.0.1:9" in done.stderr
    # a stage of another extra says what to install, in one line
    assert "train 2" in done.stdout
    assert re.search(r"error: hmss-ray train needs '\w+', which is not installed: "
                     r"pip install 'hmss-ray\[train\]'$", done.stderr.strip())  # fmt: skip


def test_import_hmss_ray_is_light(tmp_path):
    done = _python(
        """
        import sys, hmss_ray
        print(hmss_ray.__version__, "numpy" in sys.modules, sorted(hmss_ray.__all__)[:3])
        from hmss_ray import Volume  # io, numpy: no torch
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1] == "False"


@pytest.mark.wheel
def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    """Build the wheel, install it (no dependencies: they come from this environment through a
    .pth, never the checkout) into a fresh venv, and run it from a folder that is not the
    checkout."""
    wheels, venv, work = tmp_path / "wheels", tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(ROOT)], check=True, timeout=300, capture_output=True)  # fmt: skip
    (wheel,) = wheels.glob("hmss_ray-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)  # fmt: skip
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([str(python), "-c", purelib], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    # this environment's libraries, added as a plain path: its .pth files (the editable install
    # of the checkout among them) are not run, so hmss_ray can only come from the wheel
    Path(site.strip(), "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index",
                    str(wheel)], check=True, timeout=300, capture_output=True)  # fmt: skip
    hmss = str(venv / "bin" / "hmss-ray")

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=300)

    top = run(hmss, "--help")
    assert top.returncode == 0 and "demo" in top.stdout and "predict" in top.stdout
    demo = run(hmss, "demo", "--quick", "--help")
    assert demo.returncode == 0 and demo.stdout.startswith("usage: hmss-ray demo")
    code = (
        "import hmss_ray, hmss_ray.resources as r, hmss_ray.config as c; print(hmss_ray.__file__);"
        "print(c.load_config(r.config_path('brain')).tune.name);"
        "print(r.space_path('demo').is_file())"
    )
    loaded = run(str(python), "-c", code)
    where, name, space = loaded.stdout.split()
    assert Path(where).is_relative_to(venv) and not Path(where).is_relative_to(ROOT / "hmss_ray")
    assert (name, space) == ("brain", "True"), loaded.stderr
    cluster = run(hmss, "cluster", "status")
    assert cluster.returncode == 2
    assert cluster.stderr.strip().startswith("error: hmss-ray cluster runs infra.rehearsal")


def _requirements(extra: str) -> set[str]:
    """The names ``pip install 'hmss-ray[extra]'`` asks for (the extras it names, expanded)."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names, todo, seen = (
        {Requirement(d).name.lower() for d in project["dependencies"]},
        [extra],
        set(),
    )
    while todo:
        name = todo.pop()
        seen.add(name)
        for dep in project["optional-dependencies"][name]:
            req = Requirement(dep)
            if req.name == "hmss-ray":
                todo.extend(req.extras - seen)
            else:
                names.add(req.name.lower())
    return names


def test_the_client_extra_asks_for_neither_torch_nor_ray_and_dev_has_everything():
    assert not _requirements("client") & {"torch", "ray", "torchvision", "fastapi", "monai"}
    assert {"torch", "ray", "fastapi", "boto3", "pytest", "mypy"} <= _requirements("dev")
    assert "boto3" not in _requirements("all")  # benches and tests only
