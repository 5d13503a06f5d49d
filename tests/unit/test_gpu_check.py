"""``make gpu-check`` and ``bench.gpu_check`` where there is no GPU: a clear skip, and (slow) a dry
run of the bench's code on the CPU so that it cannot rot on machines without one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from bench import gpu_check

ROOT = Path(__file__).parents[2]


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="an NVIDIA GPU is here")
def test_make_gpu_check_skips_cleanly_without_a_gpu(tmp_path):
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**os.environ, "GPU_CHECK_OUT": str(tmp_path / "out")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "skipped: no NVIDIA GPU on this machine" in done.stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: make gpu-check runs it")
def test_the_bench_says_why_it_measured_nothing_without_cuda(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert gpu_check.main(["--json", str(out)]) == 0
    assert "gpu_check skipped: no CUDA device" in capsys.readouterr().out
    assert json.loads(out.read_text())["skipped"].startswith("no CUDA device")


def test_peak_table_and_override():
    assert gpu_check.peak_tflops("NVIDIA H200", None) == 989.4
    assert gpu_check.peak_tflops("NVIDIA H100 PCIe", None) == 756.0
    assert gpu_check.peak_tflops("NVIDIA A100-SXM4-80GB", None) == 312.0
    assert gpu_check.peak_tflops("Tesla T4", None) is None
    assert gpu_check.peak_tflops("Tesla T4", 65.0) == 65.0


@pytest.mark.slow
def test_a_dry_run_on_the_cpu_fills_every_figure(tmp_path):
    out = tmp_path / "dry.json"
    args = [
        "--device", "cpu", "--config", str(ROOT / "configs/demo.yaml"), "--quick", "--batch", "2",
        "--variants", "fp32,bf16_cl", "--volume-side", "64", "--json", str(out),
    ]  # fmt: skip
    assert gpu_check.main(args) == 0
    figures = json.loads(out.read_text())
    assert set(figures["variants"]) == {"fp32", "bf16_cl"}
    assert figures["flops_per_slice"]["infer"] > 0 and figures["flops_per_slice"]["train"] > 0
    assert all(v["train_slices_per_s"] > 0 for v in figures["variants"].values())
    volume = figures["volume"]
    assert volume["slices"] == 16 and volume["fp32_s"] > 0 and volume["bf16_vs_fp32_mean_hu"] >= 0
