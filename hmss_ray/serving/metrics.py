"""The endpoint's Prometheus metrics, through ``ray.serve.metrics`` (Ray adds the deployment,
replica and application tags and exports them on each node's metrics port, prefixed ``ray_``).

| metric | type | tags |
|---|---|---|
| ``hmss_requests_total`` | counter | ``status`` (HTTP code), ``format`` (answer format) |
| ``hmss_request_seconds`` | histogram | ``status`` |
| ``hmss_request_voxels`` | histogram | |
| ``hmss_inference_seconds`` | histogram | |
"""

from __future__ import annotations

LATENCY_BOUNDS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600]
VOXEL_BOUNDS = [1e5, 1e6, 5e6, 1e7, 2e7, 5e7, 1e8, 2e8, 3e8]


class ServeMetrics:
    """One set per replica."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self.requests = metrics.Counter(
            "hmss_requests",
            description="POST /v1/synthesize requests by HTTP status and answer format",
            tag_keys=("status", "format"),
        )
        self.latency = metrics.Histogram(
            "hmss_request_seconds",
            description="POST /v1/synthesize latency in the replica, upload read to answer",
            boundaries=LATENCY_BOUNDS,
            tag_keys=("status",),
        )
        self.voxels = metrics.Histogram(
            "hmss_request_voxels",
            description="voxels of each MR volume that reached inference",
            boundaries=VOXEL_BOUNDS,
        )
        self.inference = metrics.Histogram(
            "hmss_inference_seconds",
            description="seconds of inference (synthesize_volume) per volume",
            boundaries=LATENCY_BOUNDS,
        )

    def request(self, status: int, seconds: float, fmt: str) -> None:
        self.requests.inc(1, tags={"status": str(status), "format": fmt})
        self.latency.observe(seconds, tags={"status": str(status)})

    def volume(self, voxels: int, seconds: float) -> None:
        self.voxels.observe(float(voxels))
        self.inference.observe(seconds)
