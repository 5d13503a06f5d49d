"""The site's values (``infra/values.yaml``), written into every deployment file by render.

A site changes one file: the account, region, image, buckets, AMI, subnets, security group,
secret names, namespaces and the endpoint's host live in ``infra/values.yaml``;
``python -m infra.render`` rewrites each spot that carries one of them (:data:`RULES`) and writes
the IAM policies (:func:`iam_policies`) whole. ``--check`` fails while any file disagrees.
The Serve configs and ``configs/*.yaml`` name the buckets too; tests/unit/test_infra_policy.py
checks that they name the values' buckets.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
VALUES = ROOT / "infra" / "values.yaml"
KUBERAY = ROOT / "infra" / "kuberay"
AWS = ROOT / "infra" / "aws"
IAM = AWS / "iam"
DOCKERFILE = ROOT / "infra" / "docker" / "Dockerfile"
REQUIRED = (
    "account", "region", "availability_zones", "image_repository", "image_tag", "base_image",
    "base_image_digest", "data_bucket", "models_bucket", "registry_prefix", "ami_id",
    "subnet_ids", "security_group_id", "ray_token_secret", "operator_namespace",
    "ingress_namespace", "cert_issuer", "endpoint_host",
)  # fmt: skip


def load_values(path: Path = VALUES) -> dict[str, str]:
    """The values, every required key present and a string; ValueError naming what is wrong."""
    values = yaml.safe_load(path.read_text()) or {}
    missing = [k for k in REQUIRED if not isinstance(values.get(k), str) or not values[k]]
    if missing:
        raise ValueError(f"{path}: missing or not a string: {', '.join(missing)}")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", values["base_image_digest"]):
        raise ValueError(f"{path}: base_image_digest must be sha256:<64 hex digits>")
    return values


# values.yaml's stand-in until a site fills in the real digest (no registry is reachable here)
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64


def unpinned_image(v: dict[str, str]) -> str | None:
    """Why the values cannot build a deployable image (the base image's digest is still the
    placeholder), with the command that prints the real one; None when it is pinned."""
    if v["base_image_digest"] != PLACEHOLDER_DIGEST:
        return None
    base = v["base_image"]
    return (
        f"infra/values.yaml: base_image_digest is the zero placeholder; put in the digest that "
        f"`docker buildx imagetools inspect {base} --format '{{{{json .Manifest.Digest}}}}'` "
        f"(or `crane digest {base}`) prints, or pass --allow-unpinned-image to render the "
        f"repository's templates"
    )


def image(v: dict[str, str]) -> str:
    return f"{ecr_host(v)}/{v['image_repository']}:{v['image_tag']}"


def ecr_host(v: dict[str, str]) -> str:
    return f"{v['account']}.dkr.ecr.{v['region']}.amazonaws.com"


@dataclass(frozen=True)
class Rule:
    """In the files matching ``glob``, group ``v`` of ``pattern`` becomes ``value(values)``."""

    glob: str
    pattern: str
    value: Any  # Callable[[dict[str, str]], str]


ECR = r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com"
ALL = "{kuberay/*.yaml,aws/*.yaml,docker/Dockerfile}"
RULES = (
    Rule(ALL, rf"(?P<v>{ECR}/[\w.-]+:[\w.-]+)", image),
    Rule(ALL, rf"(?P<v>{ECR})(?![\w/.-])", ecr_host),
    Rule(ALL, r"arn:aws:iam::(?P<v>\d{12}):", lambda v: v["account"]),
    Rule(ALL, r"(?m)^\s*region: (?P<v>\S+)$", lambda v: v["region"]),
    Rule(ALL, r"--region (?P<v>[a-z]{2}-[a-z]+-\d)", lambda v: v["region"]),
    Rule(ALL, r"AWS_REGION: (?P<v>\S+)", lambda v: v["region"]),
    Rule(ALL, r"https://s3\.(?P<v>[a-z0-9-]+)\.amazonaws\.com", lambda v: v["region"]),
    Rule(ALL, r"availability_zone: (?P<v>\S+)", lambda v: v["availability_zones"]),
    Rule(ALL, r"ImageId: (?P<v>\S+)", lambda v: v["ami_id"]),
    Rule(ALL, r"SubnetIds: \[(?P<v>[^\]]*)\]", lambda v: ", ".join(_ids(v["subnet_ids"]))),
    Rule(ALL, r"SecurityGroupIds: \[(?P<v>[^\]]*)\]", lambda v: v["security_group_id"]),
    Rule(ALL, r"--secret-id (?P<v>[\w/+=.@-]+)", lambda v: v["ray_token_secret"]),
    Rule("aws/network.yaml", r"(?m)^      Name: (?P<v>\S+)$", lambda v: v["ray_token_secret"]),
    Rule(
        "aws/network.yaml",
        r"RegistryBucketName: \{Type: String, Default: (?P<v>[\w.-]+)\}",
        lambda v: v["models_bucket"],
    ),
    Rule(
        "kuberay/rayjob.yaml",
        r"--(?:data|shards|storage) s3://(?P<v>[\w.-]+)/",
        lambda v: v["data_bucket"],
    ),
    Rule("kuberay/rayjob.yaml", r"--output s3://(?P<v>[\w.-]+)/", lambda v: v["models_bucket"]),
    Rule(
        "docker/Dockerfile",
        r"(?m)^FROM (?P<v>\S+)$",
        lambda v: f"{v['base_image']}@{v['base_image_digest']}",
    ),
    Rule(
        "kuberay/networkpolicy.yaml",
        r"metadata\.name: (?P<v>[\w-]+)\}\n\s+podSelector:\n\s+matchLabels: "
        r"\{app\.kubernetes\.io/name: kuberay-operator",
        lambda v: v["operator_namespace"],
    ),
    Rule(
        "kuberay/networkpolicy.yaml",
        r"metadata\.name: (?P<v>[\w-]+)\}\n\s+ports:",
        lambda v: v["ingress_namespace"],
    ),
    Rule("kuberay/ingress.yaml", r"cluster-issuer: (?P<v>\S+)", lambda v: v["cert_issuer"]),
    Rule(
        "{kuberay/ingress.yaml,kuberay/rayservice.yaml}",
        r"(?:hosts: \[|host: |https://)(?P<v>[a-z0-9.-]+\.[a-z]+)(?=[\]\s/])",
        lambda v: v["endpoint_host"],
    ),
)


def _ids(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def apply_values(text: str, relative: str, values: dict[str, str]) -> str:
    """``text`` of ``infra/<relative>`` with every :data:`RULES` spot set from ``values``."""
    for rule in RULES:
        if not Path(relative).match(rule.glob) and not _brace_match(relative, rule.glob):
            continue
        new = rule.value(values)
        text = re.sub(
            rule.pattern,
            lambda m, new=new: (
                m.group(0)[: m.start("v") - m.start()] + new + m.group(0)[m.end("v") - m.start() :]
            ),
            text,
        )
    return text


def _brace_match(relative: str, glob: str) -> bool:
    inner = re.fullmatch(r"\{(.*)\}", glob)
    return bool(inner) and any(Path(relative).match(g) for g in inner.group(1).split(","))


def managed_files() -> list[Path]:
    """The deployment files :data:`RULES` apply to."""
    return [*sorted(KUBERAY.glob("*.yaml")), *sorted(AWS.glob("*.yaml")), DOCKERFILE]


def iam_policies(v: dict[str, str]) -> dict[Path, str]:
    """The IAM policy documents of the roles, from the values (least privilege, see each Sid)."""
    data, models, prefix = v["data_bucket"], v["models_bucket"], v["registry_prefix"]
    registry = f"arn:aws:s3:::{models}/{prefix}/*"
    serve = [
        _allow("ReadTheRegistryOnly", ["s3:GetObject", "s3:GetObjectVersion"], [registry]),
        _allow(
            "ListTheRegistryOnly",
            ["s3:ListBucket"],
            [f"arn:aws:s3:::{models}"],
            {"StringLike": {"s3:prefix": [f"{prefix}/*", prefix]}},
        ),
    ]
    write = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    train = [
        _allow("ReadWriteData", [*write, "s3:DeleteObject"], [f"arn:aws:s3:::{data}/*"]),
        _allow("PublishToTheRegistry", [*write, "s3:GetObjectVersion"], [registry]),
        _allow("List", ["s3:ListBucket"], [f"arn:aws:s3:::{data}", f"arn:aws:s3:::{models}"]),
    ]
    secret = f"arn:aws:secretsmanager:{v['region']}:{v['account']}:secret:{v['ray_token_secret']}-*"
    token = [_allow("ReadTheRayClusterToken", ["secretsmanager:GetSecretValue"], [secret])]
    docs = {"serve-read-only.json": serve, "train.json": train, "ray-token-read.json": token}
    return {
        IAM / name: json.dumps({"Version": "2012-10-17", "Statement": st}, indent=2) + "\n"
        for name, st in docs.items()
    }


def _allow(sid: str, actions: list[str], resources: list[str], condition: Any = None) -> dict:
    statement = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def rendered(values: dict[str, str] | None = None) -> dict[Path, str]:
    """Every value-carrying file and the text it should have."""
    values = values or load_values()
    out = {
        path: apply_values(path.read_text(), str(path.relative_to(ROOT / "infra")), values)
        for path in managed_files()
    }
    out.update(iam_policies(values))
    return out
