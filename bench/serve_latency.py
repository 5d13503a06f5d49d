"""Serve latency and memory: in-process inference vs the Ray Serve HTTP endpoint (issue 6).

All on one local Ray, loopback only, measured in one run:

1. direct: ``Synthesizer`` + ``synthesize_volume`` in this process on one phantom MR volume
   (best and median of ``--repeats``) - the baseline;
2. HTTP: ``POST /v1/synthesize`` of the same ``.nii.gz`` bytes with httpx (median of
   ``--repeats``, each right after a direct run: the machine is shared, and alternating puts a
   change of load on both); ratio HTTP / direct = what Serve, HTTP and (de)serialisation add.
   The replica's ``Server-Timing`` header splits its time (upload, parse, inference, encode)
   from the transport; ``GET /healthz`` is the floor of any call through Serve;
3. real size: the same two on a real-size phantom brain (fits 240x240x180 at 1 mm, int16
   ``.nii.gz``): HTTP minus direct seconds;
4. load: ``--clients`` concurrent clients x ``--requests`` each (a fixed count, every request with
   a timeout): p50/p95/max latency, errors (expected 0), requests/s;
5. large volume: a synthetic MR of ``--size``^2 x ``--slices`` (default 512x512x300 int16, a
   body-like ellipse) sent gzipped: its latency, and the replica's peak RSS above its idle RSS,
   set against the float32 input and the naive cost of holding every intermediate tensor of
   every slice at once.

Direct inference runs ``--threads`` torch threads, as many as the replica gets (``serve.num_cpus``).
HTTP goes through the ingress a local Ray gets from ``hmss_ray.cluster.init_ray``: Serve's HAProxy
ingress; ``RAY_SERVE_ENABLE_HA_PROXY=0 python -m bench.serve_latency`` measures Serve's Python
proxy actor instead.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench import (
    DEMO,
    MB,
    RssSampler,
    command_line,
    deadline,
    machine_facts,
    print_header,
    table,
    write_json,
)
from hmss_ray import cli
from hmss_ray.cluster import free_port

NAME = "serve_latency"
REAL_SIZE = (240, 240, 180)  # a real-size brain: SynthRAD2023 brains are about this at 1 mm
REPLICA = "SCTSynthesizer"  # in the replica's process title: ray::ServeReplica:hmss:SCTSynthesizer
EXAMPLES = """examples:
  python -m bench.serve_latency                       # tiny model trained here (1.5-3 min)
  python -m bench.serve_latency --quick               # fewer requests, 512x512x60 (about 1.5 min)
  python -m bench.serve_latency --model outputs/registry/demo --slices 300
"""


def build_entry(workdir: Path, cfg_path: str, steps: int) -> str:
    """A registry entry: the demo cascade trained ``steps`` steps on phantom shards here."""
    from hmss_ray.config import load_config
    from hmss_ray.data.prepare import prepare_dataset
    from hmss_ray.data.shards import iter_batches
    from hmss_ray.models.checkpoint import save_checkpoint, write_registry_entry
    from hmss_ray.train.local import run_local

    cfg = load_config(cfg_path, {"augment.enabled": False, "train.stage_epochs": [0, 0, 1]})
    shards = str(workdir / "shards")
    prepare_dataset(workdir / "raw", shards, cfg)
    run = run_local(
        cfg, lambda _: iter_batches(shards, "train", cfg.train.batch_size), steps_per_epoch=steps
    )
    directory = save_checkpoint(
        workdir / "checkpoint", generator=run.generator, cfg=cfg, stage="joint", step=steps
    )
    return write_registry_entry(
        directory,
        str(workdir / "registry"),
        "bench",
        metrics={},
        winner={"source": f"bench.{NAME}: {steps} steps on phantoms"},
    )


def large_volume(size: int, slices: int, dtype: str = "int16", seed: int = 0):
    """An MR NIfTI: a body-like ellipse (fat rim, soft tissue, dark bone ring) in air."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    r = np.sqrt((u / 0.80) ** 2 + (v / 0.65) ** 2)  # body about 410 x 333 voxels of 512
    plane = np.where(r < 1.0, 900.0, 0.0) + np.where(r < 0.93, -350.0, 0.0)
    plane += np.where((r > 0.55) & (r < 0.62), -480.0, 0.0)  # a dark ring, like cortical bone
    volume = np.empty((size, size, slices), np.dtype(dtype))  # int16: rounded on assignment
    for z in range(slices):
        noise = rng.normal(0.0, 15.0, (size, size)).astype(np.float32)
        volume[:, :, z] = np.where(r < 1.0, plane + noise, np.abs(noise) * 0.2)
    mask = np.broadcast_to((r < 1.0)[:, :, None], volume.shape)
    return nib.Nifti1Image(volume, np.diag([0.9, 0.9, 1.0, 1.0])), mask


def activation_bytes(synth, mask: np.ndarray, affine: np.ndarray) -> dict[str, float]:
    """Bytes of every module output for one slice on the volume's canvas (forward hooks), and
    the volume's slices with body on the contract grid."""
    import torch

    from hmss_ray.data import preprocess
    from hmss_ray.io.geometry import Grid, GridMap

    gmap = GridMap.plan(Grid(mask.shape, affine), synth.contract())
    place = preprocess.place_body(mask, gmap, synth.cfg.data.image_size, synth.stride)
    canvas, body_slices = place.box.size, int(place.mask.any(axis=(0, 1)).sum())
    total = 0

    def count(module, inputs, output) -> None:
        nonlocal total
        outs = list(output.values()) if isinstance(output, dict) else output
        for tensor in outs if isinstance(outs, (list, tuple)) else [outs]:
            if torch.is_tensor(tensor):
                total += tensor.numel() * tensor.element_size()

    leaves = [m for m in synth.generator.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            synth.generator(torch.zeros(1, synth.cfg.in_channels, canvas, canvas))
    finally:
        for hook in hooks:
            hook.remove()
    # the same bytes as this many float32 maps of canvas^2 (what "feature maps" means below)
    maps = total / (4 * canvas * canvas)
    grid = list(place.grid_shape)
    return {"canvas": canvas, "contract_shape": grid, "body_slices": body_slices,
            "per_slice_mb": total / MB, "full_res_maps": maps}  # fmt: skip


def post(client, url: str, body: bytes, timeout: float) -> dict[str, Any]:
    """One POST of a gzipped NIfTI: seconds, status (0: no answer), replica inference s, body."""
    start = time.perf_counter()
    try:
        response = client.post(
            f"{url}/v1/synthesize",
            content=body,
            headers={"Content-Type": "application/gzip"},
            timeout=timeout,
        )
    except Exception as exc:  # a timeout or a dropped connection is an error, not a crash
        return {"s": time.perf_counter() - start, "status": 0, "error": repr(exc)}
    inference = response.headers.get("x-inference-time-ms")
    phases = {}  # Server-Timing: "upload;dur=1.2, parse;dur=3.4, ..." (ms)
    for item in response.headers.get("server-timing", "").split(","):
        name, _, dur = item.strip().partition(";dur=")
        if dur:
            phases[name] = float(dur) / 1000
    return {
        "s": time.perf_counter() - start,
        "status": response.status_code,
        "inference_s": float(inference) / 1000 if inference else None,
        "phases_s": phases,
        "content": response.content,
    }


def compare(synth, mr, url: str, body: bytes, repeats: int, timeout: float) -> dict[str, Any]:
    """Direct and HTTP, alternated (one of each per round, after one warm-up of each): a change
    in the shared machine's load falls on both. ``mr`` is ``body`` parsed as the replica parses
    it; the direct runs do not count that parse (nor encoding the answer), the HTTP runs do."""
    import httpx

    from hmss_ray.inference.synthesizer import synthesize_volume

    def direct() -> float:
        start = time.perf_counter()
        synthesize_volume(synth, mr)
        return time.perf_counter() - start

    # as hmss_ray.client on loopback: no compression asked for
    with httpx.Client(headers={"Accept-Encoding": "identity"}) as client:
        direct(), post(client, url, body, timeout)  # warm-up
        pairs = [(direct(), post(client, url, body, timeout)) for _ in range(repeats)]
        floor = []
        for _ in range(repeats):
            start = time.perf_counter()
            client.get(f"{url}/healthz", timeout=timeout).raise_for_status()
            floor.append(time.perf_counter() - start)
    ok = [(d, r) for d, r in pairs if r["status"] == 200]
    if not ok:
        raise RuntimeError(f"every POST to {url} failed: {[r['status'] for _, r in pairs]}")
    times = [d for d, _ in pairs]
    http = {
        "best_s": min(r["s"] for _, r in ok),
        "median_s": statistics.median(r["s"] for _, r in ok),
        "replica_inference_median_s": statistics.median(r["inference_s"] or 0 for _, r in ok),
        "healthz_median_s": statistics.median(floor),
        "replica_phases_median_s": {
            name: statistics.median(r["phases_s"].get(name, 0.0) for _, r in ok)
            for name in ok[0][1]["phases_s"]
        },
        "answer_mb": len(ok[0][1]["content"]) / MB,
        "runs": repeats,
        "errors": len(pairs) - len(ok),
        # per round: HTTP minus the direct run just before it
        "paired_minus_direct_median_s": statistics.median(r["s"] - d for d, r in ok),
    }
    return {
        "direct": {"best_s": min(times), "median_s": statistics.median(times), "runs": repeats},
        "http": http,
    }


def real_size(url: str, synth, args: argparse.Namespace) -> dict[str, Any]:
    """Direct vs HTTP on a real-size phantom brain (fits 240x240x180 at 1 mm), sent as an int16
    ``.nii.gz`` as a scanner's export would be."""
    import nibabel as nib

    from hmss_ray.data.phantom.render import make_case
    from hmss_ray.io import volume_from_bytes

    case = make_case("1BA001", seed=0, shape=REAL_SIZE)
    mr = np.clip(np.rint(case.mr), 0, 32767).astype(np.int16)
    raw = nib.Nifti1Image(mr, case.affine).to_bytes()
    body = gzip.compress(raw, compresslevel=1)
    volume = volume_from_bytes(body, synth.cfg.io)  # as the replica parses it
    print(f"[bench] real-size brain {list(mr.shape)}: direct vs HTTP", flush=True)
    runs = compare(synth, volume, url, body, args.repeats, args.timeout)
    direct, http = runs["direct"], runs["http"]
    # the same voxels as an uncompressed .nii: no inflating in the replica (a view of the body)
    nii = compare(synth, volume, url, raw, args.repeats, args.timeout)
    nii_overhead = nii["http"]["median_s"] - nii["direct"]["median_s"]
    return {"shape": list(mr.shape), "dtype": "int16", "gzip_mb": len(body) / MB,
            "nii_mb": len(raw) / MB, "float32_mb": mr.size * 4 / MB, "direct": direct,
            "http": http, "http_minus_direct_s": http["median_s"] - direct["median_s"],
            "nii": nii, "nii_http_minus_direct_s": nii_overhead}  # fmt: skip


def load_test(url: str, body: bytes, clients: int, requests: int, timeout: float) -> dict:
    """``clients`` threads, each its own connection, ``requests`` POSTs each, back to back."""
    import httpx

    def client_run(_: int) -> list[dict[str, Any]]:
        with httpx.Client() as client:
            return [post(client, url, body, timeout) for _ in range(requests)]

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        runs = [r for rs in pool.map(client_run, range(clients)) for r in rs]
    wall = time.perf_counter() - start
    latencies = np.array([r["s"] for r in runs if r["status"] == 200])
    return {
        "clients": clients,
        "requests": len(runs),
        "errors": sum(r["status"] != 200 for r in runs),
        "statuses": sorted({r["status"] for r in runs}),
        "first_error": next((r.get("error") for r in runs if r["status"] != 200), None),
        "p50_s": float(np.percentile(latencies, 50)) if latencies.size else None,
        "p95_s": float(np.percentile(latencies, 95)) if latencies.size else None,
        "max_s": float(latencies.max()) if latencies.size else None,
        "wall_s": wall,
        "requests_per_s": len(latencies) / wall,
    }


def ingress() -> str:
    """The HTTP front of this run's Serve (read by Serve from the environment at Ray's start)."""
    return "haproxy" if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1" else "proxy actor"


def large_request(url: str, synth, args: argparse.Namespace) -> dict[str, Any]:
    """POST one large volume while sampling the replica's (and the HTTP proxy's) RSS."""
    import httpx
    import nibabel as nib

    mr_img, mask = large_volume(args.size, args.slices, args.large_dtype)
    raw_mb = mr_img.dataobj.nbytes / MB
    float32_mb = mr_img.dataobj.size * 4 / MB  # what the goal is set against
    body = gzip.compress(mr_img.to_bytes(), compresslevel=1)
    naive = activation_bytes(synth, mask, mr_img.affine)
    del mr_img, mask  # this process's memory is not what is measured
    replica = RssSampler(REPLICA, interval=0.05, env_keys=("OMP_NUM_THREADS",))
    proxy = RssSampler("haproxy" if ingress() == "haproxy" else "ProxyActor", interval=0.05)
    (idle, idle_private), proxy_idle = replica.measure(), proxy.current_bytes()
    print(f"[bench] large volume: POST {len(body) / MB:.0f} MB gzipped", flush=True)
    with replica, proxy, httpx.Client(headers={"Accept-Encoding": "identity"}) as client:
        answer = post(client, url, body, args.large_timeout)
    if answer["status"] != 200:
        raise RuntimeError(f"the large volume failed after {answer['s']:.0f} s: {answer}")
    sct = nib.Nifti1Image.from_bytes(gzip.decompress(answer["content"]))
    body_slices = naive["body_slices"]
    return {
        "shape": [args.size, args.size, args.slices],
        "dtype": args.large_dtype,
        "raw_mb": raw_mb,
        "float32_mb": float32_mb,
        "gzip_mb": len(body) / MB,
        "latency_s": answer["s"],
        "replica_inference_s": answer["inference_s"],
        "replica_idle_mb": idle / MB,
        "replica_peak_mb": replica.peak_bytes / MB,
        "replica_peak_minus_idle_mb": (replica.peak_bytes - idle) / MB,
        "replica_private_peak_minus_idle_mb": (replica.peak_private_bytes - idle_private) / MB,
        "replica_omp_num_threads": replica.env.get("OMP_NUM_THREADS"),
        "proxy_peak_minus_idle_mb": (proxy.peak_bytes - proxy_idle) / MB,
        "batch_slices": synth.batch_slices,
        **naive,
        "naive_all_slices_mb": naive["per_slice_mb"] * body_slices,
        "naive_one_batch_mb": naive["per_slice_mb"] * min(synth.batch_slices, body_slices),
        "output_shape": list(sct.shape),
        "output_dtype": str(sct.get_data_dtype()),
    }


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Model, deploy, then direct vs HTTP, the load, the large volume; Serve and Ray shut down."""
    import ray
    import torch
    from ray import serve

    from hmss_ray.cluster import init_ray
    from hmss_ray.config import IOConfig, load_config
    from hmss_ray.data.phantom import COARSE_SHAPE, write_dataset
    from hmss_ray.inference.synthesizer import Synthesizer
    from hmss_ray.io import volume_from_bytes
    from hmss_ray.models.checkpoint import localize, read_meta
    from hmss_ray.serving.app import deploy

    regions = load_config(args.config).data.regions
    write_dataset(workdir / "raw", cases=args.cases, regions=regions, seed=0, shape=COARSE_SHAPE)
    entry = args.model or build_entry(workdir, args.config, args.train_steps)
    threads = args.threads or max(1, int(read_meta(localize(entry)).cfg.serve.num_cpus))
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the replica inherits it from the raylet
    torch.set_num_threads(threads)
    case = sorted((workdir / "raw").glob("Task1/*/*/mr.nii.gz"))[0]
    body = case.read_bytes()
    mr_img = volume_from_bytes(body, IOConfig())  # as the replica parses it: decompressed, loaded
    out: dict[str, Any] = {"entry": entry, "volume": {"case": case.parent.name}}
    out["volume"].update(shape=list(mr_img.shape), gzip_kb=len(body) / 1024)
    raw_mb = args.size * args.size * args.slices * 4 / MB
    init_ray()
    out["ingress"] = ingress()
    try:
        url = deploy(entry, port=free_port(), max_upload_mb=max(512.0, 1.5 * raw_mb))
        synth = Synthesizer.from_uri(entry, device="cpu")
        out["serve_config"] = synth.cfg.to_dict()["serve"]
        print(f"[bench] serving at {url}; direct vs HTTP on {case.parent.name}", flush=True)
        load = out["load_1min_after"] = {}  # the machine may be shared: say how busy it was
        out.update(compare(synth, mr_img, url, body, args.repeats, args.timeout))
        load["direct + HTTP"] = os.getloadavg()[0]
        out["real_size"] = real_size(url, synth, args)
        load["real size"] = os.getloadavg()[0]
        print(f"[bench] load: {args.clients} clients x {args.requests} requests", flush=True)
        out["load"] = load_test(url, body, args.clients, args.requests, args.timeout)
        load["bounded load"] = os.getloadavg()[0]
        out["large"] = large_request(url, synth, args)
        load["large volume"] = os.getloadavg()[0]
    finally:
        serve.shutdown()
        ray.shutdown()
    out["threads"] = threads
    return out


def summarise(m: dict[str, Any]) -> dict[str, float]:
    direct, http, load, large = m["direct"], m["http"], m["load"], m["large"]
    return {
        "http_over_direct": http["median_s"] / direct["median_s"],
        "serve_overhead_s": http["median_s"] - direct["median_s"],
        "replica_inference_over_direct": http["replica_inference_median_s"] / direct["median_s"],
        "load_p50_over_single": (load["p50_s"] or float("nan")) / http["median_s"],
        "load_p95_over_single": (load["p95_s"] or float("nan")) / http["median_s"],
        "load_errors": load["errors"],
        "large_peak_over_naive": large["replica_peak_minus_idle_mb"] / large["naive_all_slices_mb"],
        "large_peak_over_input": large["replica_peak_minus_idle_mb"] / large["float32_mb"],
        "serve_overhead_paired_s": http["paired_minus_direct_median_s"],
        "real_size_http_minus_direct_s": m["real_size"]["http_minus_direct_s"],
        "real_size_paired_minus_direct_s": m["real_size"]["http"]["paired_minus_direct_median_s"],
        "real_size_http_over_direct": (
            m["real_size"]["http"]["median_s"] / m["real_size"]["direct"]["median_s"]
        ),
        "large_inference_share": (large["replica_inference_s"] or 0) / large["latency_s"],
    }


def _latency_rows(m: dict, r: dict) -> list[list[str]]:
    d, h, rs = m["direct"], m["http"], m["real_size"]
    rd, rh = rs["direct"], rs["http"]
    nd, nh = rs["nii"]["direct"], rs["nii"]["http"]
    shape = "x".join(str(n) for n in rs["shape"])
    return [
        ["direct, in-process", f"{d['median_s']:.3f}", f"{d['best_s']:.3f}", "1.00",
         f"baseline: Synthesizer + synthesize_volume, {d['runs']} runs"],
        ["HTTP POST /v1/synthesize", f"{h['median_s']:.3f}", f"{h['best_s']:.3f}",
         f"{r['http_over_direct']:.2f}",
         f"Serve adds {r['serve_overhead_s'] * 1000:.0f} ms a call (paired "
         f"{h['paired_minus_direct_median_s'] * 1000:.0f}); {h['errors']} errors"],
        ["  inference in the replica", f"{h['replica_inference_median_s']:.3f}", "-",
         f"{r['replica_inference_over_direct']:.2f}", "its X-Inference-Time-Ms header"],
        ["  GET /healthz", f"{h['healthz_median_s']:.3f}", "-", "-",
         "the floor of any call through Serve"],
        [f"real-size brain {shape} direct", f"{rd['median_s']:.3f}", f"{rd['best_s']:.3f}", "1.00",
         f"int16 .nii.gz, {rs['gzip_mb']:.1f} MB; {rs['float32_mb']:.0f} MB as float32"],
        ["  HTTP POST /v1/synthesize", f"{rh['median_s']:.3f}", f"{rh['best_s']:.3f}",
         f"{r['real_size_http_over_direct']:.2f}",
         f"HTTP - direct {rs['http_minus_direct_s']:.3f} s (paired "
         f"{rh['paired_minus_direct_median_s']:.3f}); answer {rh['answer_mb']:.1f} MB"],
        ["  inference in the replica", f"{rh['replica_inference_median_s']:.3f}", "-",
         f"{rh['replica_inference_median_s'] / rd['median_s']:.2f}", "X-Inference-Time-Ms"],
        ["  the same as a .nii", f"{nh['median_s']:.3f}", f"{nh['best_s']:.3f}",
         f"{nh['median_s'] / nd['median_s']:.2f}",
         f"uncompressed {rs['nii_mb']:.1f} MB: HTTP - direct {rs['nii_http_minus_direct_s']:.3f} s "
         f"(paired {nh['paired_minus_direct_median_s']:.3f})"],
    ]  # fmt: skip


def _load_rows(args: argparse.Namespace, m: dict, r: dict) -> list[list[Any]]:
    ld = m["load"]
    return [
        [f"{ld['clients']} clients x {args.requests}", ld["requests"], ld["errors"],
         f"{ld['p50_s']:.3f}", f"{ld['p95_s']:.3f}", f"{ld['max_s']:.3f}",
         f"{ld['requests_per_s']:.1f}", f"{r['load_p50_over_single']:.2f}",
         f"{r['load_p95_over_single']:.2f}"],
    ]  # fmt: skip


def _memory_rows(m: dict, r: dict) -> list[list[str]]:
    lg = m["large"]
    measured = lg["replica_peak_minus_idle_mb"]
    return [
        ["MR upload", f"{lg['gzip_mb']:.0f}", "-",
         f"{lg['dtype']} gzipped; {lg['raw_mb']:.0f} MB raw"],
        ["replica RSS peak - idle", f"{measured:.0f}", "1.00",
         f"measured: idle {lg['replica_idle_mb']:.0f} MB, peak {lg['replica_peak_mb']:.0f} MB"],
        ["  of which private", f"{lg['replica_private_peak_minus_idle_mb']:.0f}",
         f"{lg['replica_private_peak_minus_idle_mb'] / measured:.2f}",
         "RSS less shared pages (object store, libraries)"],
        ["naive: every slice at once", f"{lg['naive_all_slices_mb']:.0f}",
         f"{lg['naive_all_slices_mb'] / measured:.1f}",
         f"{lg['body_slices']} slices x {lg['canvas']}^2 x 4 B x {lg['full_res_maps']:.0f} "
         "maps: every module output kept"],
        ["the same, one batch", f"{lg['naive_one_batch_mb']:.0f}",
         f"{lg['naive_one_batch_mb'] / measured:.2f}",
         f"serve.batch_slices = {lg['batch_slices']} slices"],
        ["input volume, as float32", f"{lg['float32_mb']:.0f}",
         f"{lg['float32_mb'] / measured:.2f}",
         f"peak - idle = {r['large_peak_over_input']:.1f} x the input"],
        [f"{m['ingress']} RSS peak - idle", f"{lg['proxy_peak_minus_idle_mb']:.0f}", "-",
         "streams the bodies (kernel splice)" if m["ingress"] == "haproxy"
         else "holds the upload and the answer"],
    ]  # fmt: skip


def _phases(http: dict[str, Any]) -> str:
    """The replica's phases (Server-Timing medians) and what is left for HTTP and the proxy."""
    phases = http["replica_phases_median_s"]
    rest = http["median_s"] - sum(phases.values())
    parts = [f"{name} {seconds * 1000:.0f}" for name, seconds in phases.items()]
    return f"replica {', '.join(parts)} ms; HTTP + Serve ingress {rest * 1000:.0f} ms"


def report(args: argparse.Namespace, m: dict, r: dict, facts: dict) -> None:
    print_header("serve latency: in-process inference vs Ray Serve over HTTP (loopback)", facts)
    v, sc, lg = m["volume"], m["serve_config"], m["large"]
    print(
        f"model: {m['entry']}; volume {v['case']} {v['shape']} ({v['gzip_kb']:.0f} KB gzipped); "
        f"torch threads {m['threads']} here, OMP_NUM_THREADS={lg['replica_omp_num_threads']} in "
        f"the replica ({sc['min_replicas']}-{sc['max_replicas']} replica(s) of {sc['num_cpus']} "
        f"CPU, max_ongoing_requests {sc['max_ongoing_requests']}); HTTP ingress: {m['ingress']}"
    )
    loads = ", ".join(f"{k} {v:.1f}" for k, v in m["load_1min_after"].items())
    print(f"1-min load average at the end of each phase ({facts['cpu_count']} CPUs): {loads}")
    headers = ["one volume", "median s", "best s", "ratio", "note"]
    print("\n" + table(headers, _latency_rows(m, r), left=(0, 4)))
    print(f"phases, small volume: {_phases(m['http'])}")
    print(f"phases, real-size brain: {_phases(m['real_size']['http'])}")
    print(f"phases, real-size brain as .nii: {_phases(m['real_size']['nii']['http'])}")
    headers = ["bounded load", "requests", "errors", "p50 s", "p95 s", "max s", "req/s"]
    headers += ["p50 ratio", "p95 ratio"]
    print("\n" + table(headers, _load_rows(args, m, r)))
    print("(load ratios: vs the single-request HTTP median above)")
    shape = "x".join(str(n) for n in lg["shape"])
    headers = [f"large volume {shape} {lg['dtype']}", "MB", "vs measured", "note"]
    print("\n" + table(headers, _memory_rows(m, r), left=(0, 3)))
    print(
        f"large volume latency {lg['latency_s']:.1f} s end to end, of which inference in the "
        f"replica {lg['replica_inference_s']:.1f} s ({r['large_inference_share']:.0%}); "
        f"answer {lg['output_shape']} {lg['output_dtype']}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser("bench.serve_latency", __doc__.split("\n\n")[0], EXAMPLES)
    add = parser.add_argument
    add("--model", help="registry entry URI (default: train the demo model briefly here)")
    add("--config", default=str(DEMO), help="config of the model trained here (default: demo)")
    add("--train-steps", type=int, default=20, help="steps to train that model (20)")
    add("--cases", type=int, default=6, help="phantom cases written here (6)")
    add("--repeats", type=int, default=10, help="runs of direct and HTTP inference (10)")
    add("--clients", type=int, default=4, help="concurrent clients in the load (4)")
    add("--requests", type=int, default=10, help="requests per client (10)")
    add("--timeout", type=float, default=60.0, help="seconds per small request (60)")
    add("--size", type=int, default=512, help="in-plane size of the large volume (512)")
    add("--slices", type=int, default=300, help="slices of the large volume (300)")
    add("--large-timeout", type=float, default=600.0, help="seconds for the large request")
    add("--large-dtype", default="int16", choices=["int16", "float32"],
        help="voxel type of the large volume's NIfTI (int16)")  # fmt: skip
    add("--threads", type=int, help="torch threads here (default: the replica's serve.num_cpus)")
    add("--quick", action="store_true", help="5 repeats, 2 x 5 requests, 60 large slices")
    add("--json", default=f"outputs/bench/{NAME}.json", help="where the figures go")
    add("--max-seconds", type=int, default=900, help="abort a hung run after this")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.repeats, args.clients, args.requests, args.slices = 5, 2, 5, 60
    if os.environ.get("RAY_ADDRESS"):
        raise SystemExit("unset RAY_ADDRESS: this bench starts its own local Ray and samples the "
                         "replica's process on this machine")  # fmt: skip
    os.environ.setdefault("HMSS_RANDOM_FEATURES_OK", "1")  # no pretrained VGG for the tiny model
    facts = machine_facts("cpu")
    with tempfile.TemporaryDirectory(prefix="hmss-bench-") as tmp, deadline(args.max_seconds):
        measured = measure(args, Path(tmp))
    facts["torch_threads"] = measured["threads"]  # set in measure, once the model is known
    ratios = summarise(measured)
    facts["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report(args, measured, ratios, facts)
    payload = {"bench": NAME, "command": command_line(), "machine": facts,
               "ratios": ratios, "measured": measured,
               "real_size": {k: v for k, v in measured["real_size"].items()
                             if k not in ("direct", "http", "nii")}}  # fmt: skip
    out = write_json(args.json, payload)
    print(f"\nload average at end {facts['load_avg_at_end']}; figures written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
