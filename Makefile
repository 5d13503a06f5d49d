# hmss-ray: the two commands are `make demo` and `make test`. Every target sets up .venv itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo test test-dose test-all lint format docs bench clean gpu-check cluster-up \
	cluster-status cluster-down cluster-test bench-autoscale lock

venv: $(STAMP)

# From the lock (exact versions, sha256 hashes), then the project itself without resolving anything
# (--no-build-isolation: built with the lock's setuptools, not one fetched unpinned). The lock is
# for CPython 3.11 on Linux x86_64 (the image's); on another interpreter or platform the wheels it
# names do not exist, so the venv falls back to pyproject's ranges, and says so.
LOCK_FITS := import sys, platform; sys.exit(sys.version_info[:2] != (3, 11) or \
	sys.platform != "linux" or platform.machine() != "x86_64")
$(STAMP): pyproject.toml requirements/dev.lock.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if $(PY) -c '$(LOCK_FITS)'; then \
		echo "$(PY) -m pip install --require-hashes -r requirements/dev.lock.txt"; \
		$(PY) -m pip install -q --require-hashes -r requirements/dev.lock.txt && \
		$(PY) -m pip install -q --no-deps --no-build-isolation -e . ; \
	else \
		echo "warning: requirements/dev.lock.txt is for CPython 3.11 on Linux x86_64;" \
			"installing from pyproject.toml's ranges instead (not reproducible)"; \
		$(PY) -m pip install -q -e '.[dev]'; \
	fi
	@touch $(STAMP)

# Lock files with sha256 hashes (Python 3.11, Linux x86_64, as in the image): the image installs
# requirements/image.lock.txt with --require-hashes; `make venv` (and so CI, .ci/run) installs
# requirements/dev.lock.txt, which pins the test, lint and docs tools too.
# Refresh after editing pyproject.toml or requirements/torch.in (needs uv: pip install uv).
LOCK := $(VENV)/bin/uv pip compile pyproject.toml requirements/torch.in --generate-hashes \
	--python-version 3.11 --python-platform x86_64-manylinux_2_28
lock: $(STAMP)
	@test -x $(VENV)/bin/uv || $(PY) -m pip install -q uv
	$(LOCK) --extra all --extra tracking -o requirements/image.lock.txt
	$(LOCK) --extra all --extra tracking --extra dev -o requirements/dev.lock.txt

demo: $(STAMP)
	$(PY) -m hmss_ray demo

# two pytest runs: the commands that start their own Ray (own_ray) never share the machine with
# the session's Ray of the other tests, whatever the order
test: $(STAMP)
	$(PY) -m pytest -m "not slow and not gpu and not own_ray" $(PYTEST_ARGS)
	$(PY) -m pytest -m "own_ray and not slow and not gpu" $(PYTEST_ARGS)

# the dose check's tests (tests/unit/dose skips them without the extra) in a venv of their own,
# .venv-dose: .venv's packages plus the `dose` extra and pyRadPlan --no-deps, so that pyRadPlan's
# pydantic<2.12 never changes .venv (scripts/dose_venv.py, docs/decisions/dose-engine.md)
DOSE_VENV := .venv-dose
DOSE_STAMP := $(DOSE_VENV)/.installed

$(DOSE_STAMP): pyproject.toml scripts/dose_venv.py $(STAMP)
	$(PY) scripts/dose_venv.py $(VENV) $(DOSE_VENV)
	@touch $(DOSE_STAMP)

test-dose: $(DOSE_STAMP)
	$(DOSE_VENV)/bin/python -m pytest tests/unit/dose $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -m "not gpu and not own_ray" $(PYTEST_ARGS)
	$(PY) -m pytest -m "own_ray and not gpu" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy  # the public API, strictly: [tool.mypy] files in pyproject.toml

# the documentation site into site/, strict (a broken link or a warning fails it); the reference
# and benchmark pages are generated during the build by scripts/gen_docs.py (mkdocs-gen-files)
docs: $(STAMP)
	DISABLE_MKDOCS_2_WARNING=true NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) -m bench.train_throughput
	$(PY) -m bench.serve_latency
	$(PY) -m bench.ddp_comm

# on a machine with an NVIDIA GPU: .venv, the tests marked gpu, bench/gpu_check.py (~8 min);
# elsewhere it says there is no GPU and exits 0 (scripts/gpu_check.sh)
gpu-check:
	@bash scripts/gpu_check.sh

# the rehearsal cluster: Ray's fake multi-node autoscaler on this machine with the cloud's node
# types, plus an S3 server on loopback (README, "Running hmss-ray on a GPU cluster")
cluster-up: $(STAMP)
	$(PY) -m infra.rehearsal up --s3

cluster-status: $(STAMP)
	$(PY) -m infra.rehearsal status

cluster-down: $(STAMP)
	$(PY) -m infra.rehearsal down

# the search as a job on the rehearsal, autoscaled from 0 worker nodes and back, a node lost
# mid-search (`slow`: about 7 min; `make test` runs only the quick test_rehearsal.py)
cluster-test: $(STAMP)
	$(PY) -m pytest tests/integration/test_cluster_job.py $(PYTEST_ARGS)

bench-autoscale: $(STAMP)
	$(PY) -m bench.autoscale

clean:
	rm -rf $(VENV) $(DOSE_VENV) build site *.egg-info .pytest_cache .ruff_cache
