"""Put the Ray cluster token from AWS Secrets Manager where Ray looks for it, at node start.

    python -m hmss_ray.auth_token --secret-id hmss-ray/ray-auth-token --region us-west-2

The cluster launcher (infra/aws/cluster.yaml, setup_commands) runs this on every node, with the
node's instance profile as credentials; the container has ``RAY_AUTH_MODE=token``, so every Ray
process of the node then reads ``~/.ray/auth_token`` (Ray's default token path). The file is
written mode 600, never through a symlink, and replaced atomically. The token never appears in
the repository, the launcher YAML or a command line.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

DEFAULT_PATH = Path.home() / ".ray" / "auth_token"


class TokenError(RuntimeError):
    """The token could not be read or written; the message says why."""


def fetch(secret_id: str, region: str | None = None) -> str:
    """The secret's string value from AWS Secrets Manager (the caller's credentials)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client = boto3.client("secretsmanager", region_name=region)
        token = client.get_secret_value(SecretId=secret_id).get("SecretString", "")
    except (BotoCoreError, ClientError) as e:
        raise TokenError(f"cannot read secret {secret_id!r}: {e}") from None
    token = token.strip()
    if len(token) < 32:
        raise TokenError(f"secret {secret_id!r} holds no token of at least 32 characters")
    return token


def write_token(token: str, path: Path = DEFAULT_PATH) -> Path:
    """Write ``token`` to ``path`` (mode 600; its folder 700), atomically, never via a link."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(token)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hmss_ray.auth_token", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--secret-id", required=True, help="Secrets Manager name or ARN")
    parser.add_argument("--region", default=None, help="AWS region (default: the SDK's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH, help="where Ray reads it")
    args = parser.parse_args(argv)
    try:
        path = write_token(fetch(args.secret_id, args.region), args.out)
    except (TokenError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote the Ray token to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
