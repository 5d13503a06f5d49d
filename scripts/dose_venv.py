"""Make the dose check's venv (`make test-dose`): .venv's packages plus the `dose` extra.

pyRadPlan 0.5.0 needs pydantic < 2.12 (docs/decisions/dose-engine.md); installing the extra
into .venv would hold back everyone's pydantic. So the dose venv is a second, small venv: a
`.pth` file adds .venv's site-packages *after* its own (``site.addsitedir``, so .venv's own
``.pth`` files, the editable install among them, still work), and only what the extra adds or
pins differently (pymedphys, numba, pydantic 2.11, pyRadPlan ``--no-deps``) is installed in it.
pip leaves .venv's copies alone ("outside environment"); the dose venv's come first on sys.path.

    python scripts/dose_venv.py .venv .venv-dose
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import venv
from pathlib import Path

PYRADPLAN = "pyradplan==0.5.0"  # --no-deps: its declared pydantic-ai pulls ~90 packages
ROOT = Path(__file__).resolve().parents[1]


def site_packages(python: Path) -> Path:
    """The purelib directory of the environment whose interpreter is ``python``."""
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(subprocess.check_output([str(python), "-c", code], text=True).strip())


def dose_requirements() -> list[str]:
    """The `dose` extra of pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["optional-dependencies"]["dose"])


def main(base: str, target: str) -> int:
    base_python = Path(base).resolve() / "bin" / "python"
    python = Path(target).resolve() / "bin" / "python"
    if not python.exists():
        venv.EnvBuilder(with_pip=True, symlinks=True).create(target)
    line = f"import site; site.addsitedir({str(site_packages(base_python))!r})\n"
    (site_packages(python) / "_hmss_base_venv.pth").write_text(line)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *dose_requirements()], check=True)
    subprocess.run([*pip, "--no-deps", PYRADPLAN], check=True)
    # the base venv is untouched: its pydantic is still its own
    code = "import pydantic; print(pydantic.VERSION)"
    versions = [subprocess.check_output([str(p), "-c", code], text=True).strip()
                for p in (base_python, python)]  # fmt: skip
    print(f"[hmss] {target}: pydantic {versions[1]} (the dose extra); {base}: {versions[0]}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
