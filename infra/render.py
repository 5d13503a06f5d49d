"""Regenerate the deployment files (or the parts of them) that are copies of another file.

These are never edited by hand, so they cannot drift from their source:

- ``spec.serveConfigV2`` of ``infra/kuberay/rayservice.yaml`` is ``serve/hmss.yaml`` (the file
  ``serve run`` / ``serve deploy`` take) with the HTTP host set to all interfaces, as a pod needs.
- ``spec.rayClusterSpec`` of ``infra/kuberay/rayjob.yaml`` is the ``spec`` of
  ``infra/kuberay/raycluster.yaml``, copied as text so its comments come along.
- ``infra/rehearsal/cluster.yaml``, the one-machine rehearsal cluster, is derived whole from
  ``infra/aws/cluster.yaml`` (same node types; GPUs as the custom resource ``accel``).
- the site's values (``infra/values.yaml``: account, region, image, buckets, AMI, network, secret
  names) in every deployment file, and the IAM policies whole (``infra/site.py``).

The KubeRay blocks are replaced in place, so the hand-written rest of each manifest keeps its
comments.

    python -m infra.render            # rewrite the generated blocks (refused while the base
                                      # image's digest is the placeholder)
    python -m infra.render --check    # exit 1 when a committed manifest is stale (CI, tests)
    python -m infra.render --allow-unpinned-image   # the repository's templates, placeholder kept
    python -m infra.render --serve serve/hmss-gpu.yaml --out /tmp/rayservice-gpu.yaml
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from infra import memory, site
from infra.rehearsal import config as rehearsal

ROOT = Path(__file__).resolve().parent.parent
SERVE_CONFIG = ROOT / "serve" / "hmss.yaml"
RAYCLUSTER = ROOT / "infra" / "kuberay" / "raycluster.yaml"
RAYJOB = ROOT / "infra" / "kuberay" / "rayjob.yaml"
RAYSERVICE = ROOT / "infra" / "kuberay" / "rayservice.yaml"

# Inside a pod the Serve proxy must accept connections from the Kubernetes Service, not only
# from loopback (serve/hmss.yaml binds 127.0.0.1 for laptops).
POD_HTTP_HOST = "0.0.0.0"


class RenderError(ValueError):
    """A manifest or source file does not have the block render expects; the message says which."""


def serve_config_v2(serve_config: dict[str, Any]) -> dict[str, Any]:
    """The RayService's Serve config: the Serve config file with the pod's HTTP host, and each
    replica's Ray ``memory`` from the endpoint's memory formula (infra/memory.py), so that Ray
    never packs more replicas into a pod than its memory limit holds."""
    if not serve_config.get("applications"):
        raise RenderError("the Serve config has no `applications` list")
    rendered = dict(serve_config)
    http = dict(serve_config.get("http_options") or {})
    http["host"] = POD_HTTP_HOST
    rendered["http_options"] = http
    rendered["applications"] = [_with_memory(app) for app in serve_config["applications"]]
    # Applications last, as `serve build` writes them: the long part reads best at the end.
    rendered["applications"] = rendered.pop("applications")
    return rendered


def _with_memory(app: dict[str, Any]) -> dict[str, Any]:
    deployments = []
    for deployment in app.get("deployments") or []:
        options = dict(deployment.get("ray_actor_options") or {})
        options["memory"] = memory.deployment_bytes(deployment)
        deployments.append({**deployment, "ray_actor_options": options})
    return {**app, "deployments": deployments}


def find_block(
    lines: list[str], key: str, where: str, indent: int | None = None
) -> tuple[int, int, int]:
    """The line of the one ``key:`` in ``lines``, the end of its indented body, and its indent.

    ``indent`` restricts the search to keys at that column (``spec:`` also occurs inside pod
    templates). The body is every following line indented deeper than the key (blank lines
    inside it included, blank lines after it not).
    """
    column = " " * indent if indent is not None else " *"
    pattern = re.compile(rf"^({column}){re.escape(key)}:\s*(\|[-+]?)?\s*(#.*)?$")
    found = [i for i, line in enumerate(lines) if pattern.match(line)]
    if len(found) != 1:
        raise RenderError(f"{where}: expected exactly one `{key}:` line, found {len(found)}")
    start = found[0]
    indent = len(lines[start]) - len(lines[start].lstrip(" "))
    end = start + 1
    for i in range(start + 1, len(lines)):
        text = lines[i]
        if not text.strip():
            continue
        if len(text) - len(text.lstrip(" ")) <= indent:
            break
        end = i + 1
    return start, end, indent


def reindent(body: list[str], indent: int) -> list[str]:
    """``body`` moved so that its least indented line starts at column ``indent``."""
    widths = [len(line) - len(line.lstrip(" ")) for line in body if line.strip()]
    shift = indent - min(widths, default=indent)
    out = []
    for line in body:
        if not line.strip():
            out.append("")
        elif shift >= 0:
            out.append(" " * shift + line)
        else:
            out.append(line[-shift:])
    return out


def replace_block(text: str, key: str, body: list[str], where: str) -> str:
    """``text`` with the body of its ``key:`` block replaced by ``body`` (indented under it)."""
    lines = text.splitlines()
    start, end, indent = find_block(lines, key, where)
    new = [*lines[: start + 1], *reindent(body, indent + 2), *lines[end:]]
    return "\n".join(new) + "\n"


def block_body(text: str, key: str, where: str, indent: int | None = None) -> list[str]:
    """The indented body of the one ``key:`` block in ``text``, as lines."""
    lines = text.splitlines()
    start, end, _ = find_block(lines, key, where, indent)
    return lines[start + 1 : end]


def render_rayservice(serve_path: Path, manifest_text: str) -> str:
    """``manifest_text`` (a RayService) with serveConfigV2 regenerated from ``serve_path``."""
    source = yaml.safe_load(serve_path.read_text())
    if not isinstance(source, dict):
        raise RenderError(f"{serve_path}: not a Serve config (a mapping with `applications`)")
    dumped = yaml.safe_dump(serve_config_v2(source), sort_keys=False, width=100)
    return replace_block(manifest_text, "serveConfigV2", dumped.splitlines(), "RayService")


def render_rayjob(raycluster_text: str, manifest_text: str) -> str:
    """``manifest_text`` (a RayJob) with rayClusterSpec copied from the RayCluster's ``spec``."""
    body = block_body(raycluster_text, "spec", "RayCluster", indent=0)
    return replace_block(manifest_text, "rayClusterSpec", body, "RayJob")


def rendered(serve_path: Path = SERVE_CONFIG, out: Path | None = None) -> dict[Path, str]:
    """Each generated manifest and the text it should have."""
    service_out = out or RAYSERVICE
    values = site.load_values()
    texts = site.rendered(values)

    def current(path: Path) -> str:  # with the site's values
        if path not in texts:
            texts[path] = site.apply_values(path.read_text(), f"kuberay/{path.name}", values)
        return texts[path]

    generated = {
        service_out: render_rayservice(serve_path, current(RAYSERVICE)),
        RAYJOB: render_rayjob(current(RAYCLUSTER), current(RAYJOB)),
    }
    if service_out != RAYSERVICE:
        texts.pop(RAYSERVICE)
    texts.update(generated)
    cloud = yaml.safe_load(texts[rehearsal.AWS_CLUSTER])
    texts[rehearsal.REHEARSAL_CLUSTER] = rehearsal.HEADER + yaml.safe_dump(
        rehearsal.rehearsal_config(cloud), sort_keys=False, width=100
    )
    return texts


def stale(expected: dict[Path, str]) -> list[Path]:
    """The manifests whose committed text differs from what render would write."""
    return [
        path for path, text in expected.items() if not path.exists() or path.read_text() != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.render",
        description=__doc__.split("\n\n")[0],
        epilog="example: python -m infra.render --check",
    )
    parser.add_argument("--check", action="store_true", help="only report stale files; exit 1")
    parser.add_argument("--serve", type=Path, default=SERVE_CONFIG, help="Serve config source")
    parser.add_argument("--out", type=Path, default=None, help="write the RayService here")
    parser.add_argument(
        "--allow-unpinned-image",
        action="store_true",
        help="write files although base_image_digest is the placeholder (the repository's "
        "templates; such files build no image)",
    )
    args = parser.parse_args(argv)

    expected = rendered(args.serve, args.out)
    outdated = stale(expected)
    if args.check:
        for path in outdated:
            print(f"{_show(path)} is stale: run `python -m infra.render`", file=sys.stderr)
        return 1 if outdated else 0
    unpinned = site.unpinned_image(site.load_values())
    if unpinned and not args.allow_unpinned_image:
        print(f"error: {unpinned}", file=sys.stderr)
        return 2
    for path in outdated:
        path.write_text(expected[path])
        print(f"wrote {_show(path)}")
    return 0


def _show(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


if __name__ == "__main__":
    sys.exit(main())
