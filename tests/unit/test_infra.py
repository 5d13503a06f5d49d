"""Every deployment file loads and says what its consumer needs.

The cluster launcher YAML goes through Ray's own validator; the KubeRay manifests are checked for
the fields the operator acts on; the Serve configs through Ray Serve's own schema; the Dockerfile
statically (no docker here). Ray's version must agree across pyproject.toml, the image and every
manifest, and no file may carry a credential. Nothing here starts Ray or touches a network.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import hmss_ray

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # infra/ is not an installed package: import it from the checkout
    sys.path.insert(0, str(ROOT))

from infra import capacity, render  # noqa: E402
from infra.rehearsal import __main__ as rehearsal_cli  # noqa: E402
from infra.rehearsal import cluster as rehearsal_cluster  # noqa: E402
from infra.rehearsal import config as rehearsal  # noqa: E402
from infra.rehearsal import serving as rehearsal_serving  # noqa: E402

INFRA = ROOT / "infra"
CLUSTER_YAML = INFRA / "aws" / "cluster.yaml"
DOCKERFILE = INFRA / "docker" / "Dockerfile"
KUBERAY = INFRA / "kuberay"
SERVE_CPU = ROOT / "serve" / "hmss.yaml"
SERVE_GPU = ROOT / "serve" / "hmss-gpu.yaml"
SERVE_CONFIGS = (SERVE_CPU, SERVE_GPU)
IMAGE_TAG = re.compile(r":(?P<package>[0-9][\w.]*)-ray(?P<ray>\d+\.\d+\.\d+)-py311-gpu$")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def requirements() -> list[str]:
    """The base dependencies and every extra's, less the extras that name the package itself."""
    project = pyproject()
    extras = [d for deps in project["optional-dependencies"].values() for d in deps]
    return [d for d in [*project["dependencies"], *extras] if not d.startswith("hmss-ray")]


def pinned_ray_version() -> str:
    pins = {
        m.group(1)
        for dep in requirements()
        if (m := re.fullmatch(r"ray(?:\[[\w,\s-]+\])?\s*==\s*([\w.]+)", dep.strip()))
    }
    assert len(pins) == 1, "pyproject.toml must pin one Ray version, as ray[...]==X.Y.Z"
    return pins.pop()


def image_versions(image: str) -> tuple[str, str] | None:
    """(package version, Ray version) from an hmss-ray image reference, or None."""
    m = IMAGE_TAG.search(image)
    return (m.group("package"), m.group("ray")) if m else None


# --- cluster launcher ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    return load(CLUSTER_YAML)


def worker_types(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in cfg["available_node_types"].items() if k != cfg["head_node_type"]}


def ray_validate(cfg: dict[str, Any]) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(cfg)))


def test_cluster_yaml_passes_rays_own_validator(cluster):
    ray_validate(cluster)


def _negative_gpus(cfg):
    next(iter(worker_types(cfg).values()))["resources"]["GPU"] = -1


def _unknown_key(cfg):
    cfg["max_wrokers"] = 3


def _min_above_global_max(cfg):
    for node in worker_types(cfg).values():
        node["min_workers"] = cfg["max_workers"]


@pytest.mark.parametrize("breaks", [_negative_gpus, _unknown_key, _min_above_global_max])
def test_rays_validator_rejects_broken_variants(cluster, breaks):
    # Proves the validator above is live: the same call fails on a config broken on purpose.
    import jsonschema

    bad = copy.deepcopy(cluster)
    breaks(bad)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        ray_validate(bad)


def test_head_node_takes_no_training(cluster):
    head = cluster["available_node_types"][cluster["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "the head must advertise CPU: 0"
    assert head["resources"].get("GPU", 0) == 0
    assert head.get("max_workers", 0) == 0


def test_worker_types_scale_from_zero_under_a_ceiling(cluster):
    workers = worker_types(cluster)
    gpus = {name: node["resources"].get("GPU", 0) for name, node in workers.items()}
    assert {1, 8} <= set(gpus.values()), f"want a 1-GPU and an 8-GPU type, got {gpus}"
    for name, node in workers.items():
        assert node["min_workers"] == 0, f"{name} must scale from zero"
        assert 1 <= node["max_workers"] <= cluster["max_workers"], name
    assert cluster["upscaling_speed"] > 0
    assert 0 < cluster["idle_timeout_minutes"] <= 60


def test_cpu_only_work_has_a_cpu_node_type(cluster):
    # else the autoscaler meets a prepare or Ray Data task with a GPU node
    cpu_types = [
        name for name, node in worker_types(cluster).items() if not node["resources"].get("GPU")
    ]
    assert cpu_types, "no CPU-only worker type"
    groups = load(KUBERAY / "raycluster.yaml")["spec"]["workerGroupSpecs"]
    assert any(not any(gpu_limit(c) for c in containers(g)) for g in groups)


def test_cluster_runs_the_project_image_and_installs_the_package(cluster):
    assert image_versions(cluster["docker"]["image"]), cluster["docker"]["image"]
    assert cluster["file_mounts"] == {"~/hmss-ray": "."}
    assert any("pip install" in c and "~/hmss-ray" in c for c in cluster["setup_commands"])


def test_every_node_gets_s3_through_an_instance_profile(cluster):
    for name, node in cluster["available_node_types"].items():
        profile = node["node_config"].get("IamInstanceProfile", {})
        assert profile.get("Name") or profile.get("Arn"), f"{name} has no IAM instance profile"


def cpu_quantity(value: str | int | float) -> float:
    """A Kubernetes CPU quantity ("7", "500m", 4) in cores."""
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


@pytest.mark.parametrize("config", ["brain", "pelvis"])
def test_train_workers_of_the_gpu_configs_fit_a_gpu_node(cluster, config):
    # A worker that fits no node type leaves the autoscaler nothing to launch: the run hangs. One
    # CPU beyond the worker's own is kept for Ray Data, which starves without it.
    from hmss_ray.config import load_config

    train = load_config(ROOT / "configs" / f"{config}.yaml").train
    need_cpu, need_gpu = train.cpus_per_worker + 1, train.gpus_per_worker
    assert train.use_gpu
    nodes = {n: v["resources"] for n, v in worker_types(cluster).items()}
    assert any(r["CPU"] >= need_cpu and r["GPU"] >= need_gpu for r in nodes.values()), nodes
    pods = [
        c["resources"]["limits"]
        for g in load(KUBERAY / "raycluster.yaml")["spec"]["workerGroupSpecs"]
        for c in containers(g)
    ]
    assert any(
        cpu_quantity(p["cpu"]) >= need_cpu and int(p.get("nvidia.com/gpu", 0)) >= need_gpu
        for p in pods
    ), pods


# --- the rehearsal cluster (one machine) ---------------------------------------------------------


@pytest.fixture(scope="module")
def rehearsal_yaml() -> dict[str, Any]:
    return load(rehearsal.REHEARSAL_CLUSTER)


def test_rehearsal_yaml_passes_rays_own_validator(rehearsal_yaml):
    ray_validate(rehearsal_yaml)


def test_rehearsal_has_the_clouds_node_types_with_accel_for_gpus(cluster, rehearsal_yaml):
    cloud, local = worker_types(cluster), worker_types(rehearsal_yaml)
    assert set(local) == set(cloud), "worker node types must carry the cloud's names"
    for name, node in local.items():
        assert node["min_workers"] == cloud[name]["min_workers"] == 0, name
        assert 1 <= node["max_workers"] <= cloud[name]["max_workers"], name
        gpus = cloud[name]["resources"].get("GPU", 0)
        assert node["resources"].get(rehearsal.ACCELERATOR, 0) == gpus, name
        assert "GPU" not in node["resources"], f"{name}: no CUDA here, the GPU is `accel`"
    head = rehearsal_yaml["available_node_types"][rehearsal_yaml["head_node_type"]]
    assert head["resources"] == {"CPU": 0} and head["max_workers"] == 0, "no training on the head"
    assert rehearsal_yaml["upscaling_speed"] == cluster["upscaling_speed"]
    assert rehearsal_yaml["idle_timeout_minutes"] < cluster["idle_timeout_minutes"]


def test_rehearsal_follows_an_edit_of_the_cloud_yaml(cluster):
    # a node type added to the cloud file appears in the rehearsal; nothing is kept by hand
    edited = copy.deepcopy(cluster)
    edited["available_node_types"]["gpu.4x"] = {
        "min_workers": 0, "max_workers": 1, "resources": {"CPU": 48, "GPU": 4}, "node_config": {},
    }  # fmt: skip
    types = rehearsal.rehearsal_config(edited)["available_node_types"]
    assert types["gpu.4x"]["resources"][rehearsal.ACCELERATOR] == 4
    assert types["gpu.4x"]["max_workers"] == 1


def _fits(need: dict[str, float], nodes: dict[str, dict[str, Any]]) -> list[str]:
    return [
        name
        for name, node in nodes.items()
        if all(node["resources"].get(k, 0) >= v for k, v in need.items())
    ]


def test_one_config_schedules_on_gpu_in_the_cloud_and_on_accel_in_the_rehearsal(
    cluster, rehearsal_yaml
):
    from hmss_ray.config import load_config

    demo, gpu = ROOT / "configs" / "demo.yaml", "train.use_gpu=true"
    cloud = load_config(demo, [gpu]).train
    local = load_config(demo, [gpu, f"train.accelerator_resource={rehearsal.ACCELERATOR}"]).train
    assert cloud.cuda and not local.cuda  # the rehearsal's workers compute on their CPU
    assert _fits(cloud.worker_resources(), worker_types(cluster))
    assert not _fits(cloud.worker_resources(), worker_types(rehearsal_yaml))
    assert _fits(local.worker_resources(), worker_types(rehearsal_yaml)) == ["gpu.1x", "gpu.8x"]


def test_rehearsal_runtime_config_fills_in_the_head_and_node_dirs(tmp_path):
    cfg = rehearsal.runtime_config(
        rehearsal.REHEARSAL_CLUSTER.read_text(), 41234, tmp_path / "nodes", 0.05
    )
    assert cfg["provider"]["gcs_address"] == "127.0.0.1:41234"
    assert cfg["provider"]["nodes_dir"] == str(tmp_path / "nodes")
    assert cfg["idle_timeout_minutes"] == 0.05
    assert cfg["provider"]["module"] == rehearsal.PROVIDER
    ray_validate(cfg)


def test_rehearsal_serve_config_is_the_gpu_one_on_accel():
    from ray.serve.schema import ServeDeploySchema

    cfg = rehearsal_serving.serve_config("s3://b/registry/x", 8123, {"AWS_REGION": "us-east-1"})
    ServeDeploySchema.model_validate(cfg)
    (deployment,) = cfg["applications"][0]["deployments"]
    gpu = load(SERVE_GPU)["applications"][0]["deployments"][0]
    assert deployment["ray_actor_options"]["resources"] == {
        rehearsal.ACCELERATOR: gpu["ray_actor_options"]["num_gpus"]
    }
    assert "num_gpus" not in deployment["ray_actor_options"]
    low, high = rehearsal_serving.replica_bounds(cfg)
    assert low == gpu["autoscaling_config"]["min_replicas"] < high
    assert high <= gpu["autoscaling_config"]["max_replicas"]
    assert cfg["http_options"] == {"host": "127.0.0.1", "port": 8123}
    assert cfg["proxy_location"] == "HeadOnly"


def test_runtime_env_carries_only_the_callers_s3_variables():
    env = rehearsal_cli.runtime_env({"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "HOME": "/root"})
    assert env["env_vars"] == {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "PYTHONUNBUFFERED": "1"}


def test_down_stops_exactly_the_processes_that_carry_the_rehearsals_marker(tmp_path):
    # stand-ins for a head and a job driver (which starts its own session): plain sleeps
    state = tmp_path / "state"
    state.mkdir()
    env = {**os.environ, rehearsal_cluster.MARKER: str(state)}
    head = subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    driver = subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)  # not the rehearsal's
    try:
        rehearsal_cluster.Rehearsal(str(state), 1, 2, head.pid).save()
        assert {head.pid, driver.pid} <= set(rehearsal_cluster.marked_pids(state))
        assert other.pid not in rehearsal_cluster.marked_pids(state)
        rehearsal_cluster.down(state, grace=1)
        assert head.wait(timeout=10) is not None and driver.wait(timeout=10) is not None
        assert other.poll() is None, "down must not touch a process it did not start"
        assert not state.exists()
    finally:
        for proc in (head, driver, other):
            proc.kill()
            proc.wait()


def test_rehearsal_cli_without_a_cluster_says_so(tmp_path, capsys):
    assert rehearsal_cli.main(["status", "--state", str(tmp_path)]) == 2
    assert "no rehearsal cluster" in capsys.readouterr().err
    assert rehearsal_cli.main(["down", "--state", str(tmp_path)]) == 0


# --- credentials ---------------------------------------------------------------------------------

SECRET_PATTERNS = [
    re.compile(r"aws_(access_key_id|secret_access_key|session_token)", re.I),
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    # a 40-character AWS secret key: base64 with mixed case, digits and / or +
    re.compile(r"(?<![\w/+=])(?=[\w/+]*[A-Z])(?=[\w/+]*[a-z])(?=[\w/+]*\d)[\w/+]{40}(?![\w/+=])"),
]


def find_secrets(text: str) -> list[str]:
    return [m.group(0) for p in SECRET_PATTERNS for m in p.finditer(text)]


def deployment_files() -> list[Path]:
    files = [p for p in INFRA.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    files += [*SERVE_CONFIGS, ROOT / ".dockerignore", ROOT / "docs" / "infra.md"]
    return files


@pytest.mark.parametrize(
    "text",
    [
        "aws_secret_access_key = x",
        "AWS_ACCESS_KEY_ID: x",
        "key: AKIAIOSFODNN7EXAMPLE",
        "secret: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "-----BEGIN RSA PRIVATE KEY-----",
    ],
)
def test_secret_scanner_catches_credentials(text):
    assert find_secrets(text)


def test_no_credentials_in_deployment_files():
    found = {
        str(p.relative_to(ROOT)): hits
        for p in deployment_files()
        if p.exists() and (hits := find_secrets(p.read_text(errors="replace")))
    }
    assert not found, f"credential-like strings: {found}"


# --- KubeRay -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    return {name: load(KUBERAY / f"{name}.yaml") for name in ("raycluster", "rayjob", "rayservice")}


def cluster_specs(m: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        "raycluster": m["raycluster"]["spec"],
        "rayjob": m["rayjob"]["spec"]["rayClusterSpec"],
        "rayservice": m["rayservice"]["spec"]["rayClusterConfig"],
    }


def containers(group: dict[str, Any]) -> list[dict[str, Any]]:
    return group["template"]["spec"]["containers"]


def gpu_limit(container: dict[str, Any]) -> int:
    return int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


def test_manifests_are_ray_io_v1_of_the_right_kinds(manifests):
    kinds = {name: (doc["apiVersion"], doc["kind"]) for name, doc in manifests.items()}
    assert kinds == {
        "raycluster": ("ray.io/v1", "RayCluster"),
        "rayjob": ("ray.io/v1", "RayJob"),
        "rayservice": ("ray.io/v1", "RayService"),
    }


@pytest.mark.parametrize("which", ["raycluster", "rayjob", "rayservice"])
def test_cluster_spec_autoscales_gpu_groups_from_zero(manifests, which):
    spec = cluster_specs(manifests)[which]
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]
    assert all(gpu_limit(c) == 0 for c in containers(head)), "the head must not take a GPU"
    assert head["rayStartParams"].get("num-cpus") == "0", "the head must advertise no CPUs"
    gpu_groups = [g for g in spec["workerGroupSpecs"] if any(gpu_limit(c) for c in containers(g))]
    assert gpu_groups, "no worker group with nvidia.com/gpu limits"
    for group in gpu_groups:
        name = group["groupName"]
        assert group["minReplicas"] == 0, f"{name} must scale from zero"
        assert group["maxReplicas"] >= 1 and group.get("replicas", 0) <= group["maxReplicas"]
        for c in containers(group):
            requests = c["resources"].get("requests", {})
            assert int(requests.get("nvidia.com/gpu", 0)) == gpu_limit(c), name


def service_accounts() -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((KUBERAY / "serviceaccount.yaml").read_text())
    return {d["metadata"]["name"]: d for d in docs if d}


def test_every_pod_uses_an_irsa_service_account_of_its_job(manifests):
    # training pods may write the buckets; serving pods (untrusted uploads) only read the registry
    accounts = service_accounts()
    assert set(accounts) == {"hmss-ray-train", "hmss-ray-serve"}
    for account in accounts.values():
        assert account["kind"] == "ServiceAccount"
        role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        assert role.startswith("arn:aws:iam") and role.endswith(account["metadata"]["name"])
    wanted = {"raycluster": "hmss-ray-train", "rayjob": "hmss-ray-train",
              "rayservice": "hmss-ray-serve"}  # fmt: skip
    for which, spec in cluster_specs(manifests).items():
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
            pod = group["template"]["spec"]
            assert pod.get("serviceAccountName") == wanted[which], which


def entrypoint_args(manifests) -> tuple[list[str], dict[str, str]]:
    argv = shlex.split(manifests["rayjob"]["spec"]["entrypoint"])
    options = dict(zip(argv[3::2], argv[4::2], strict=True))
    return argv, options


def test_rayjob_runs_the_tune_entry_point(manifests):
    from hmss_ray.tune.__main__ import build_parser

    argv, options = entrypoint_args(manifests)
    assert argv[:3] == ["python", "-m", "hmss_ray.tune"]
    assert set(options) == {"--config", "--space", "--shards", "--storage", "--output"}
    args = build_parser().parse_args(argv[3:])  # the real parser takes the job's arguments
    assert (args.shards, args.storage) == (options["--shards"], options["--storage"])
    assert all(options[k].startswith("s3://") for k in ("--shards", "--storage", "--output"))
    assert manifests["rayjob"]["spec"]["shutdownAfterJobFinishes"] is True


def test_rayjob_entry_point_files_are_in_the_repository(manifests):
    _, options = entrypoint_args(manifests)
    for flag in ("--config", "--space"):
        assert (ROOT / options[flag]).is_file(), f"{flag} {options[flag]} does not exist"


def test_rayjob_runtime_env_names_the_endpoint_but_no_credentials(manifests):
    runtime_env = yaml.safe_load(manifests["rayjob"]["spec"]["runtimeEnvYAML"])
    env = runtime_env["env_vars"]
    assert env.get("AWS_ENDPOINT_URL_S3", "").startswith("http")
    assert not [k for k in env if re.search(r"SECRET|ACCESS_KEY|SESSION_TOKEN|PASSWORD", k)]


def test_rayjob_cluster_is_the_raycluster(manifests):
    assert manifests["rayjob"]["spec"]["rayClusterSpec"] == manifests["raycluster"]["spec"]


def test_rayservice_serves_the_serve_config_file(manifests):
    from ray.serve.schema import ServeDeploySchema

    served = yaml.safe_load(manifests["rayservice"]["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(served)
    source = load(SERVE_CPU)
    assert served["applications"] == render.serve_config_v2(source)["applications"]
    for app, want in zip(served["applications"], source["applications"], strict=True):
        for got, deployment in zip(app["deployments"], want["deployments"], strict=True):
            options = dict(got["ray_actor_options"])
            assert options.pop("memory") > 0  # the replica's memory formula (infra/memory.py)
            assert {**got, "ray_actor_options": options} == deployment
    assert served["http_options"] == {"host": "0.0.0.0", "port": source["http_options"]["port"]}
    head = manifests["rayservice"]["spec"]["rayClusterConfig"]["headGroupSpec"]
    ports = {p["name"]: p["containerPort"] for c in containers(head) for p in c.get("ports", [])}
    assert ports.get("serve") == source["http_options"]["port"]


@pytest.mark.parametrize("path", SERVE_CONFIGS, ids=lambda p: p.name)
def test_rayservice_has_a_worker_group_for_each_serve_variant(manifests, path):
    spec = manifests["rayservice"]["spec"]["rayClusterConfig"]
    options = load(path)["applications"][0]["deployments"][0]["ray_actor_options"]
    limits = [c["resources"]["limits"] for g in spec["workerGroupSpecs"] for c in containers(g)]
    assert any(
        cpu_quantity(p["cpu"]) >= options["num_cpus"]
        and int(p.get("nvidia.com/gpu", 0)) >= options["num_gpus"]
        for p in limits
    ), f"no RayService worker group fits a replica of {path.name}"


def test_generated_manifests_are_up_to_date():
    done = subprocess.run(
        [sys.executable, "-m", "infra.render", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_render_check_fails_on_a_stale_manifest(tmp_path, monkeypatch):
    service = tmp_path / "rayservice.yaml"
    job = tmp_path / "rayjob.yaml"
    service.write_text(render.RAYSERVICE.read_text().replace("SCTSynthesizer", "Stale", 1))
    job.write_text(render.RAYJOB.read_text())
    monkeypatch.setattr(render, "RAYSERVICE", service)
    monkeypatch.setattr(render, "RAYJOB", job)
    assert render.main(["--check"]) == 1
    assert render.main([]) == 2  # the template's placeholder digest (test_install_policy.py)
    assert render.main(["--allow-unpinned-image"]) == 0
    assert render.main(["--check"]) == 0
    assert "Stale" not in service.read_text()


def test_replace_block_keeps_the_rest_and_its_comments():
    text = "# head\nspec:\n  # why\n  key: |\n    old: 1\n\n    older: 2\n  next: 3  # kept\n"
    out = render.replace_block(text, "key", ["new: 1"], "test")
    assert out == "# head\nspec:\n  # why\n  key: |\n    new: 1\n  next: 3  # kept\n"


def test_render_errors_name_the_missing_block():
    with pytest.raises(render.RenderError, match="serveConfigV2"):
        render.replace_block("spec:\n  other: 1\n", "serveConfigV2", ["a: 1"], "RayService")


# --- Serve configs -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SERVE_CONFIGS, ids=lambda p: p.name)
def test_serve_config_passes_serve_schema_and_has_the_app(path):
    from ray.serve.schema import ServeDeploySchema

    cfg = load(path)
    ServeDeploySchema.model_validate(cfg)
    assert cfg["http_options"] == {"host": "127.0.0.1", "port": 8000}
    (app,) = cfg["applications"]
    assert (app["name"], app["route_prefix"]) == ("hmss", "/")
    assert app["import_path"] == "hmss_ray.serving.app:build_app"
    assert app["args"]["model"]
    (deployment,) = app["deployments"]
    assert deployment["name"] == "SCTSynthesizer"
    scaling = deployment["autoscaling_config"]
    assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"]
    assert scaling["target_ongoing_requests"] <= deployment["max_ongoing_requests"]
    assert set(deployment["ray_actor_options"]) == {"num_cpus", "num_gpus"}


def test_gpu_serve_config_differs_only_in_capacity():
    cpu, gpu = (load(p)["applications"][0] for p in SERVE_CONFIGS)
    same = ("name", "route_prefix", "import_path", "args")
    assert {k: cpu[k] for k in same} == {k: gpu[k] for k in same}
    assert gpu["deployments"][0]["ray_actor_options"]["num_gpus"] >= 1
    assert cpu["deployments"][0]["ray_actor_options"]["num_gpus"] == 0


def test_serve_import_path_and_deployment_name_exist_in_the_code():
    import importlib

    app = load(SERVE_CPU)["applications"][0]
    module, _, attr = app["import_path"].partition(":")
    loaded = importlib.import_module(module)
    assert callable(getattr(loaded, attr, None)), f"{module} defines no {attr}"
    assert app["deployments"][0]["name"] == loaded.DEPLOYMENT


# --- container image -----------------------------------------------------------------------------


def dockerfile_lines() -> list[str]:
    # join continuation lines so each instruction is one line
    return [s.strip() for s in DOCKERFILE.read_text().replace("\\\n", " ").splitlines()]


def test_dockerfile_base_image_matches_the_pinned_ray():
    froms = [line.split()[1] for line in dockerfile_lines() if line.startswith("FROM ")]
    assert [f.split("@")[0] for f in froms] == [f"rayproject/ray:{pinned_ray_version()}-py311-gpu"]


def test_dockerfile_pins_torch_and_installs_the_package_as_non_root():
    from packaging.requirements import Requirement

    lines = dockerfile_lines()
    wanted = {Requirement(d).name: Requirement(d) for d in requirements()}
    pins = [Requirement(line) for line in (ROOT / "requirements" / "torch.in").read_text().split(
        "\n") if line.strip() and not line.startswith("#")]  # fmt: skip
    assert {p.name for p in pins} == {"torch", "torchvision"}
    for pin in pins:
        (spec,) = pin.specifier
        assert spec.operator == "==", f"{pin} must be an exact version"
        assert wanted[pin.name].specifier.contains(spec.version), f"{pin} breaks {wanted[pin.name]}"
    assert any("pip install --no-deps ." in line for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] == "ray", "the image must end as the non-root user ray"


def test_dockerfile_copies_only_what_exists_and_is_not_ignored():
    ignored = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()
    }
    assert {".venv", ".git", "data", "outputs"} <= ignored
    sources = [
        src
        for line in dockerfile_lines()
        if line.startswith("COPY ")
        for src in [w for w in line.split()[1:] if not w.startswith("--")][:-1]
    ]
    assert "pyproject.toml" in sources and "hmss_ray" in sources
    missing = [s for s in sources if not (ROOT / s).exists()]
    assert not missing, f"docker build would fail: COPY sources missing {missing}"
    assert not set(sources) & ignored, "a COPY source is excluded by .dockerignore"


# --- versions agree ------------------------------------------------------------------------------


def test_image_tag_parser():
    assert image_versions("r.example/hmss-ray:0.2.0-ray2.59.1-py311-gpu") == ("0.2.0", "2.59.1")
    assert image_versions("rayproject/ray:2.60.0-py311-gpu") is None


def test_ray_and_package_versions_agree_everywhere(cluster, manifests):
    ray_version, package_version = pinned_ray_version(), hmss_ray.__version__
    found: dict[str, tuple[str, str] | str | None] = {
        "cluster.yaml docker.image": image_versions(cluster["docker"]["image"]),
    }
    for which, spec in cluster_specs(manifests).items():
        found[f"{which} rayVersion"] = spec["rayVersion"]
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
            for c in containers(group):
                found[f"{which} {group.get('groupName', 'head')} image"] = image_versions(
                    c["image"]
                )
    drift = {
        where: got
        for where, got in found.items()
        if got != ((package_version, ray_version) if "image" in where else ray_version)
    }
    assert not drift, f"pyproject pins ray=={ray_version}, package {package_version}; got {drift}"


# --- capacity plan -------------------------------------------------------------------------------


def test_slice_bytes_counts_float32_images_and_a_uint8_mask():
    assert capacity.slice_bytes(256) == 256 * 256 * (4 + 4 + 1) == 589_824
    assert capacity.slice_bytes(256, context_slices=2) == 256 * 256 * (5 * 4 + 4 + 1)
    with pytest.raises(ValueError):
        capacity.slice_bytes(256, context_slices=-1)


def test_epoch_time_follows_the_formula():
    assert capacity.epoch_seconds(24_000, gpus=1, slices_per_s=100, efficiency=1.0) == 240
    assert capacity.epoch_seconds(24_000, gpus=8, slices_per_s=100, efficiency=1.0) == 30
    assert capacity.epoch_seconds(24_000, gpus=8, slices_per_s=100, efficiency=0.5) == 60
    for bad in ({"slices_per_s": 0}, {"gpus": 0}, {"efficiency": 1.5}):
        kwargs = {"gpus": 1, "slices_per_s": 100.0, "efficiency": 1.0, **bad}
        with pytest.raises(ValueError):
            capacity.epoch_seconds(1000, **kwargs)


def test_capacity_plan_scales_as_a_planner_expects():
    rows = capacity.plan(100.0)
    assert {(r.region, r.gpus) for r in rows} == {
        (region, g) for region in ("brain", "pelvis") for g in (1, 8, 32)
    }
    faster = {(r.region, r.gpus): r.epoch_s for r in capacity.plan(200.0)}
    for region in ("brain", "pelvis"):
        epoch = {r.gpus: r.epoch_s for r in rows if r.region == region}
        # more GPUs: shorter epochs, but never better than linear
        assert epoch[1] > epoch[8] > epoch[32]
        assert epoch[8] >= epoch[1] / 8 and epoch[32] >= epoch[1] / 32
        # twice the measured throughput halves every epoch
        assert faster[region, 8] == pytest.approx(epoch[8] / 2)
    # brain volumes have more (1 mm) slices per patient than pelvis volumes (2.5 mm)
    slices = {r.region: r.slices for r in rows if r.gpus == 1}
    assert slices["brain"] > slices["pelvis"] > 0


def test_capacity_cli_prints_the_table(capsys):
    assert capacity.main(["--slices-per-s", "50", "--gpus", "1", "8"]) == 0
    out = capsys.readouterr().out
    assert "T = 50 slices/s per GPU, data.context_slices = 1" in out
    assert "| brain | 8 | 25,200 |" in out and "| pelvis | 1 | 14,490 |" in out
    with pytest.raises(SystemExit):
        capacity.main(["--slices-per-s", "-1"])
