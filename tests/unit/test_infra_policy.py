"""The security policy of every deployment file (issue 28; docs/security/cluster.md).

Reads every KubeRay manifest, the cluster launcher YAML, the CloudFormation template, the IAM
policies and the Dockerfile, and asserts each rule: Ray token auth, NetworkPolicies, hardened
containers, no optional secrets, least-privilege roles, no world-open ingress, encrypted volumes,
pinned images, memory limits that hold the replicas Ray may place, one file of site values. The
KubeRay manifests are validated strictly against the CRD schemas of KubeRay 1.6.2
(infra/schemas/). Offline; nothing starts.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from infra import memory, render, site  # noqa: E402

KUBERAY = ROOT / "infra" / "kuberay"
AWS = ROOT / "infra" / "aws"
SCHEMAS = ROOT / "infra" / "schemas"
CLUSTERS = {"raycluster": ("spec",), "rayjob": ("spec", "rayClusterSpec"),
            "rayservice": ("spec", "rayClusterConfig")}  # fmt: skip
SERVE_CONFIGS = {"cpu": ROOT / "serve" / "hmss.yaml", "gpu": ROOT / "serve" / "hmss-gpu.yaml"}


class _CloudFormationLoader(yaml.SafeLoader):
    """Loads CloudFormation's short tags (!Ref, !Sub, ...) as plain values."""


_CloudFormationLoader.add_multi_constructor(
    "!", lambda loader, suffix, node: loader.construct_scalar(node)
    if isinstance(node, yaml.ScalarNode) else loader.construct_sequence(node)
)  # fmt: skip


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((KUBERAY / f"{name}.yaml").read_text()) if d]


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    return {name: docs(name)[0] for name in CLUSTERS}


def cluster_spec(doc: dict[str, Any], which: str) -> dict[str, Any]:
    spec = doc
    for key in CLUSTERS[which]:
        spec = spec[key]
    return spec


def groups(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [spec["headGroupSpec"], *spec["workerGroupSpecs"]]


def pod_specs(manifests) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every pod template, the RayJob's submitter included."""
    out = [
        (f"{which}/{g.get('groupName', 'head')}", g["template"])
        for which, doc in manifests.items()
        for g in groups(cluster_spec(doc, which))
    ]
    out.append(("rayjob/submitter", manifests["rayjob"]["spec"]["submitterPodTemplate"]))
    return out


def all_containers(manifests) -> list[tuple[str, dict[str, Any]]]:
    found = [(w, c) for w, t in pod_specs(manifests) for c in t["spec"]["containers"]]
    for which, doc in manifests.items():
        options = cluster_spec(doc, which).get("autoscalerOptions")
        if options is not None:
            found.append((f"{which}/autoscaler", options))
    return found


# --- Ray token authentication --------------------------------------------------------------------


@pytest.mark.parametrize("which", list(CLUSTERS))
def test_every_kuberay_cluster_requires_the_ray_token_from_a_secret(manifests, which):
    auth = cluster_spec(manifests[which], which).get("authOptions", {})
    assert auth.get("mode") == "token", f"{which}: authOptions.mode must be token"
    assert auth.get("secretName"), f"{which}: the token must come from a named Secret"
    for where, container in all_containers(manifests):
        for env in container.get("env", []):
            assert env["name"] != "RAY_AUTH_MODE" or env.get("value") == "token", where
            assert env["name"] != "RAY_AUTH_TOKEN" or "value" not in env, f"{where}: literal token"


@pytest.fixture(scope="module")
def launcher() -> dict[str, Any]:
    return yaml.safe_load((AWS / "cluster.yaml").read_text())


def test_launcher_nodes_run_with_the_token_from_secrets_manager(launcher):
    assert "--env RAY_AUTH_MODE=token" in launcher["docker"]["run_options"]
    fetch = [c for c in launcher["setup_commands"] if "hmss_ray.auth_token" in c]
    assert fetch and "--secret-id" in fetch[0], "no node fetches the token at start"
    start = " ".join(launcher["head_start_ray_commands"] + launcher["worker_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "0.0.0.0" not in start
    from hmss_ray import auth_token  # the module the nodes run exists and parses its flags

    with pytest.raises(SystemExit):
        auth_token.main(["--help"])


def test_the_image_turns_token_auth_on_and_starts_haproxy_through_the_guard():
    text = (ROOT / "infra" / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    env = dict(re.findall(r"\b(RAY_[A-Z_]+)=(\S+)", text))
    assert env["RAY_AUTH_MODE"] == "token"
    guard = env["RAY_SERVE_HAPROXY_BINARY_PATH"]
    assert f"python -m hmss_ray.haproxy install {Path(guard).parent}" in text


# --- network isolation ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def policies() -> dict[str, dict[str, Any]]:
    found = {d["metadata"]["name"]: d for d in docs("networkpolicy")}
    assert all(d["kind"] == "NetworkPolicy" for d in found.values())
    return found


def test_every_pod_is_labelled_for_the_network_policies(manifests):
    for where, template in pod_specs(manifests):
        labels = template.get("metadata", {}).get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "hmss-ray", where
        assert labels.get("app.kubernetes.io/component") in {"train", "serve", "submitter"}
        kind = "serve" if where.startswith("rayservice") else "train"
        if not where.endswith("submitter"):
            assert labels["app.kubernetes.io/component"] == kind, where


def test_network_policies_deny_by_default_and_admit_only_named_peers(policies):
    deny = policies["hmss-ray-default-deny"]["spec"]
    assert deny["podSelector"]["matchLabels"] == {"app.kubernetes.io/part-of": "hmss-ray"}
    assert deny["policyTypes"] == ["Ingress"] and not deny.get("ingress")
    for name, policy in policies.items():
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), f"{name}: an ingress rule without `from` admits everyone"
            for peer in rule["from"]:
                assert "ipBlock" not in peer, f"{name}: admits an address range"
                assert peer.get("podSelector") or peer.get("namespaceSelector", {}).get(
                    "matchLabels"
                ), f"{name}: a peer selecting every pod"


def test_the_endpoint_is_reached_only_from_the_ingress_and_the_dashboard_only_from_kuberay(
    policies,
):
    values = site.load_values()
    serve = policies["hmss-ray-serve-ingress"]["spec"]
    (rule,) = serve["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": values["ingress_namespace"]}}}
    ]  # fmt: skip
    dashboard = policies["hmss-ray-dashboard"]["spec"]
    assert dashboard["podSelector"]["matchLabels"]["ray.io/node-type"] == "head"
    (rule,) = dashboard["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8265}]
    namespaces = [
        p["namespaceSelector"]["matchLabels"] for p in rule["from"] if p.get("namespaceSelector")
    ]
    assert namespaces == [{"kubernetes.io/metadata.name": values["operator_namespace"]}]
    # training and serving pods reach only their own kind
    for kind in ("train", "serve"):
        (intra,) = policies[f"hmss-ray-{kind}-intra"]["spec"]["ingress"]
        (peer,) = intra["from"]
        assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == kind


def test_the_endpoint_is_served_over_tls_at_the_ingress():
    (ingress,) = docs("ingress")
    tls = ingress["spec"]["tls"]
    assert tls and all(t.get("secretName") for t in tls)
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]
    hosts = {r["host"] for r in ingress["spec"]["rules"]}
    assert hosts <= {h for t in tls for h in t["hosts"]}, "a host without a certificate"


# --- hardened pods -------------------------------------------------------------------------------


def test_every_container_is_hardened(manifests):
    for where, container in all_containers(manifests):
        sc = container.get("securityContext") or {}
        assert sc.get("runAsNonRoot") is True, where
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
        assert not sc.get("capabilities", {}).get("add"), where
        assert sc.get("seccompProfile") == {"type": "RuntimeDefault"}, where
        assert sc.get("readOnlyRootFilesystem") is True, where
        assert not sc.get("privileged"), where


def test_pods_are_non_root_and_mount_a_bounded_tmp(manifests):
    for where, template in pod_specs(manifests):
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for v in volumes.values():
            assert "hostPath" not in v, f"{where}: hostPath volume"
            if "emptyDir" in v:
                assert v["emptyDir"].get("sizeLimit"), f"{where}: unbounded emptyDir {v['name']}"
        for c in pod["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{where}: /tmp must be an emptyDir"
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), where


def test_every_container_bounds_memory_cpu_and_ephemeral_storage(manifests):
    for where, c in all_containers(manifests):
        resources = c["resources"]
        for kind in ("requests", "limits"):
            assert resources[kind].get("ephemeral-storage"), f"{where}: no {kind} ephemeral"
        assert resources["limits"].get("memory") and resources["limits"].get("cpu"), where


def test_only_the_head_of_a_training_cluster_keeps_an_api_token(manifests):
    for where, template in pod_specs(manifests):
        if not where.endswith("/head"):
            assert template["spec"].get("automountServiceAccountToken") is False, where


# --- secrets -------------------------------------------------------------------------------------


def _secret_refs(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        refs = [v for k, v in node.items() if k in ("secretKeyRef", "secretRef", "secret")]
        return refs + [r for v in node.values() for r in _secret_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _secret_refs(v)]
    return []


def test_no_secret_is_optional(manifests):
    refs = _secret_refs(manifests)
    assert refs, "the endpoint token must come from a Secret"
    assert all(not r.get("optional") for r in refs), "an optional Secret fails open"
    serve = cluster_spec(manifests["rayservice"], "rayservice")
    for group in serve["workerGroupSpecs"]:
        names = [e["name"] for c in group["template"]["spec"]["containers"] for e in c["env"]]
        assert "HMSS_API_TOKEN" in names, group["groupName"]


# --- least privilege -----------------------------------------------------------------------------


def _statements(name: str) -> list[dict[str, Any]]:
    return json.loads((AWS / "iam" / name).read_text())["Statement"]


def test_the_serving_role_only_reads_the_registry_prefix():
    values = site.load_values()
    prefix = f"arn:aws:s3:::{values['models_bucket']}/{values['registry_prefix']}/"
    for st in _statements("serve-read-only.json"):
        assert st["Effect"] == "Allow"
        assert set(st["Action"]) <= {"s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"}
        for resource in st["Resource"]:
            if st["Action"] == ["s3:ListBucket"]:
                assert resource == f"arn:aws:s3:::{values['models_bucket']}"
                assert st["Condition"]["StringLike"]["s3:prefix"]
            else:
                assert resource.startswith(prefix), resource


def test_no_policy_grants_wildcards_or_deletes_models():
    for path in (AWS / "iam").glob("*.json"):
        for st in _statements(path.name):
            assert all("*" not in a for a in st["Action"]), path.name
            assert all(r != "*" and not r.endswith(":::*") for r in st["Resource"]), path.name
            if "s3:DeleteObject" in st["Action"]:
                assert all(site.load_values()["models_bucket"] not in r for r in st["Resource"])


def test_the_registry_bucket_keeps_every_version_under_object_lock():
    template = yaml.load((AWS / "network.yaml").read_text(), Loader=_CloudFormationLoader)
    bucket = template["Resources"]["RegistryBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["ObjectLockEnabled"] is True
    assert bucket["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]["Days"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]


# --- AWS nodes -----------------------------------------------------------------------------------


def test_launcher_nodes_are_private_encrypted_and_pinned(launcher):
    assert launcher["provider"]["use_internal_ips"] is True
    for name, node in launcher["available_node_types"].items():
        cfg = node["node_config"]
        # with SecurityGroupIds on every type Ray creates no default group (SSH from 0.0.0.0/0)
        assert re.fullmatch(r"sg-[0-9a-f]{8,17}", cfg["SecurityGroupIds"][0]), name
        assert cfg["SubnetIds"], name
        assert re.fullmatch(r"ami-[0-9a-f]{8,17}", cfg["ImageId"]), f"{name}: pin an AMI id"
        assert cfg["MetadataOptions"]["HttpTokens"] == "required", name
        for device in cfg["BlockDeviceMappings"]:
            assert device["Ebs"]["Encrypted"] is True, f"{name}: unencrypted EBS"


def test_no_security_group_admits_the_world(launcher):
    rules = launcher["provider"].get("security_group", {}).get("IpPermissions", [])
    template = yaml.load((AWS / "network.yaml").read_text(), Loader=_CloudFormationLoader)
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        rules = rules + props.get("SecurityGroupIngress", [])
        if resource["Type"] == "AWS::EC2::SecurityGroupIngress":
            rules.append(props)
    assert rules, "the template defines the nodes' ingress"
    text = json.dumps(rules)
    assert "0.0.0.0/0" not in text and "::/0" not in text
    assert all(r.get("CidrIp") is None for r in rules), "ingress only from security groups"


# --- images and installs -------------------------------------------------------------------------


def test_every_image_is_the_sites_pinned_image(manifests, launcher):
    values = site.load_values()
    images = [c["image"] for w, c in all_containers(manifests) if "image" in c]
    images.append(launcher["docker"]["image"])
    assert set(images) == {site.image(values)}
    assert not any(i.endswith(":latest") for i in images)
    froms = re.findall(r"(?m)^FROM (\S+)", (ROOT / "infra" / "docker" / "Dockerfile").read_text())
    assert len(froms) == 1 and re.search(r"@sha256:[0-9a-f]{64}$", froms[0]), froms


def test_the_image_installs_from_the_hashed_lock():
    dockerfile = (ROOT / "infra" / "docker" / "Dockerfile").read_text()
    assert "pip install --require-hashes --no-deps -r requirements/image.lock.txt" in dockerfile
    from packaging.requirements import Requirement

    text = (ROOT / "requirements" / "image.lock.txt").read_text()
    pins = dict(re.findall(r"(?m)^([A-Za-z0-9_.-]+)==(\S+) \\$", text))
    assert len(pins) == len(re.findall(r"(?m)^[A-Za-z0-9]", text)), "every entry is name==version"
    assert text.count("--hash=sha256:") >= len(pins)
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    image = [d for k in ("client", "train", "serve", "tracking") for d in extras[k]]
    for dep in project["dependencies"] + image:  # every stage's role extra is in the image
        req = Requirement(dep)
        if req.name == "hmss-ray":  # an extra made of other extras
            continue
        name = next((n for n in pins if n.lower().replace("_", "-") == req.name.lower()), None)
        assert name, f"{req.name} is not in the lock: run `make lock`"
        assert req.specifier.contains(pins[name]), f"lock {name}=={pins[name]} breaks {req}"


# --- memory --------------------------------------------------------------------------------------


def test_replica_memory_formula():
    assert memory.replica_bytes(4, 512, 2**28) == 14 * memory.GiB
    assert memory.replica_bytes(8, 512, 2**28) == 16 * memory.GiB
    assert memory.quantity_bytes("28Gi") == 28 * memory.GiB
    assert memory.quantity_bytes("512Mi") == 512 * memory.MiB


def _replicas_per_pod(group: dict[str, Any], options: dict[str, Any], replica: int) -> int:
    (container,) = group["template"]["spec"]["containers"]
    limits = container["resources"]["limits"]
    params = group["rayStartParams"]
    cpus = float(params.get("num-cpus", str(limits["cpu"])))
    gpus = int(limits.get("nvidia.com/gpu", 0))
    bounds = [int(cpus // options["num_cpus"]) if options["num_cpus"] else 99]
    if options.get("num_gpus"):
        bounds.append(int(gpus // options["num_gpus"]))
    bounds.append(int(memory.quantity_bytes(params["memory"]) // replica))
    return min(bounds)


@pytest.mark.parametrize("variant", list(SERVE_CONFIGS))
def test_serve_pods_hold_the_replicas_ray_may_place_on_them(manifests, variant):
    spec = cluster_spec(manifests["rayservice"], "rayservice")
    deployment = yaml.safe_load(SERVE_CONFIGS[variant].read_text())["applications"][0]
    deployment = deployment["deployments"][0]
    replica = memory.deployment_bytes(deployment)
    options = deployment["ray_actor_options"]
    fits = 0
    for group in spec["workerGroupSpecs"]:
        (container,) = group["template"]["spec"]["containers"]
        limit = memory.quantity_bytes(container["resources"]["limits"]["memory"])
        params = group["rayStartParams"]
        shm = sum(
            memory.quantity_bytes(v["emptyDir"]["sizeLimit"])
            for v in group["template"]["spec"].get("volumes", [])
            if v.get("emptyDir", {}).get("medium") == "Memory"
        )
        advertised = memory.quantity_bytes(params["memory"])
        store = memory.quantity_bytes(params["object-store-memory"])
        assert advertised + store + shm + memory.RAY_SYSTEM_BYTES <= limit, group["groupName"]
        n = _replicas_per_pod(group, options, replica)
        assert n * replica <= advertised
        fits += n
    assert fits >= 1, f"no serve worker group holds a {variant} replica"
    # the RayService tells Ray each replica's memory, so that Ray packs by it
    served = yaml.safe_load(manifests["rayservice"]["spec"]["serveConfigV2"])
    (rendered,) = render.serve_config_v2({"applications": [served["applications"][0]]})[
        "applications"
    ]
    assert served["applications"][0]["deployments"][0]["ray_actor_options"]["memory"] == (
        memory.deployment_bytes(served["applications"][0]["deployments"][0])
    )
    assert rendered == served["applications"][0]


# --- one source of truth -------------------------------------------------------------------------


def test_changing_the_values_file_changes_every_deployment_file():
    values = site.load_values()
    other = {**values, "account": "999999999999", "region": "eu-central-1",
             "availability_zones": "eu-central-1a", "ami_id": "ami-0fedcba9876543210",
             "subnet_ids": "subnet-0fedcba9876543210", "security_group_id": "sg-0fedcba987654321",
             "data_bucket": "site-data", "models_bucket": "site-models",
             "ray_token_secret": "site/ray", "operator_namespace": "kuberay",
             "ingress_namespace": "edge", "cert_issuer": "site-ca", "endpoint_host": "sct.site.org",
             "base_image_digest": "sha256:" + "1" * 64}  # fmt: skip
    texts = site.rendered(other)
    for path, text in texts.items():
        for key in ("account", "region", "ami_id", "security_group_id", "endpoint_host"):
            assert values[key] not in text, f"{path.name} keeps {key}={values[key]}"
        for key in ("data_bucket", "models_bucket", "operator_namespace", "ingress_namespace"):
            if not (key == "models_bucket" and path.name == "rayservice.yaml"):
                # (serveConfigV2 names the model as serve/hmss.yaml does: next test)
                assert values[key] not in text, f"{path.name} keeps {key}={values[key]}"
    assert "site-models/registry/*" in texts[AWS / "iam" / "serve-read-only.json"]
    assert "sha256:" + "1" * 64 in texts[ROOT / "infra" / "docker" / "Dockerfile"]


def test_the_configs_name_the_sites_buckets():
    values = site.load_values()
    models = f"s3://{values['models_bucket']}/{values['registry_prefix']}"
    for path in SERVE_CONFIGS.values():
        model = yaml.safe_load(path.read_text())["applications"][0]["args"]["model"]
        assert model.startswith(models + "/"), path.name
    for path in (ROOT / "configs").glob("*.yaml"):
        registry = (yaml.safe_load(path.read_text()).get("tune") or {}).get("registry", "")
        assert not registry.startswith("s3://") or registry == models, path.name


# --- CRD schemas ---------------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """``schema`` with additionalProperties: false wherever it lists properties (kubectl's strict
    validation), except where Kubernetes keeps unknown fields."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _validator(kind: str):
    import jsonschema

    schema = _strict(json.loads((SCHEMAS / f"{kind}.json").read_text()))
    # metadata is ObjectMeta, which the CRD leaves open
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("kind", list(CLUSTERS))
def test_manifests_match_the_kuberay_crd_schemas(manifests, kind):
    errors = sorted(_validator(kind).iter_errors(manifests[kind]), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


def test_the_schema_check_catches_a_misspelt_field(manifests):
    broken = json.loads(json.dumps(manifests["raycluster"]))
    broken["spec"]["authOptions"]["mdoe"] = broken["spec"]["authOptions"].pop("mode")
    assert list(_validator("raycluster").iter_errors(broken))


# --- the rules above fail on a broken manifest ---------------------------------------------------


def _serve_worker(m):
    return cluster_spec(m["rayservice"], "rayservice")["workerGroupSpecs"][0]


def _optional_token(m):
    env = _serve_worker(m)["template"]["spec"]["containers"][0]["env"][0]
    env["valueFrom"]["secretKeyRef"]["optional"] = True


def _root_container(m):
    _serve_worker(m)["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = False


def _no_auth(m):
    del m["raycluster"]["spec"]["authOptions"]


def _no_ephemeral_limit(m):
    limits = _serve_worker(m)["template"]["spec"]["containers"][0]["resources"]["limits"]
    del limits["ephemeral-storage"]


def _too_much_advertised(m):
    _serve_worker(m)["rayStartParams"]["memory"] = str(40 * memory.GiB)


BREAKS = {
    _optional_token: test_no_secret_is_optional,
    _root_container: test_every_container_is_hardened,
    _no_ephemeral_limit: test_every_container_bounds_memory_cpu_and_ephemeral_storage,
    _no_auth: lambda m: test_every_kuberay_cluster_requires_the_ray_token_from_a_secret(
        m, "raycluster"
    ),
    _too_much_advertised: lambda m: test_serve_pods_hold_the_replicas_ray_may_place_on_them(
        m, "cpu"
    ),
}


@pytest.mark.parametrize("breaks", list(BREAKS), ids=lambda f: f.__name__)
def test_the_policy_rejects_a_broken_manifest(manifests, breaks):
    broken = json.loads(json.dumps(manifests))
    breaks(broken)
    with pytest.raises(AssertionError):
        BREAKS[breaks](broken)
