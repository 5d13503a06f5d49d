"""The endpoint's rules without a server: tokens, Host, scratch folders, identity, outputs."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest

from hmss_ray.config import ConfigError, IOConfig, UserError
from hmss_ray.config.inference import ServeConfig
from hmss_ray.io import Volume
from hmss_ray.io.dicom_write import (
    PatientFields,
    SeriesInfo,
    check_output_target,
    write_dicom_series,
)
from hmss_ray.serving import guard
from hmss_ray.serving.scratch import Scratch, parent_folder, sweep_dead

CFG = ServeConfig(api_token_env="HMSS_TEST_TOKENS")


def test_tokens_come_from_the_environment_and_a_secret_file(tmp_path):
    secret = tmp_path / "tokens"
    secret.write_text("# rotated 2026-12\nfile-token-0123456789\n\nsecond-file-token-99\n")
    env = {
        "HMSS_TEST_TOKENS": "env-token-abcdef, env-token-ghijkl",
        guard.TOKEN_FILE_ENV: str(secret),
    }
    tokens = guard.load_tokens(CFG, env)
    assert len(tokens) == 4
    assert guard.load_tokens(CFG, {}) == ()
    with pytest.raises(UserError, match="at least 12"):
        guard.load_tokens(CFG, {"HMSS_TEST_TOKENS": "short"})
    with pytest.raises(UserError, match="cannot read"):
        guard.load_tokens(CFG, {guard.TOKEN_FILE_ENV: str(tmp_path / "missing")})


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (b"Bearer env-token-abcdef", True),
        (b"bearer env-token-ghijkl", True),  # the scheme is case-insensitive
        (b"Bearer env-token-abcdeX", False),
        (b"Basic env-token-abcdef", False),
        (b"env-token-abcdef", False),
        ("Bearer t\u00f6ken\u00e9-abcdef".encode(), False),  # non-ASCII: a 401, not a 500
        (b"Bearer \xff\xfe\x00", False),
        (b"", False),
        (None, False),
    ],
)
def test_authorisation_is_a_yes_or_no_for_any_header(header, ok):
    tokens = guard.load_tokens(CFG, {"HMSS_TEST_TOKENS": "env-token-abcdef env-token-ghijkl"})
    assert guard.authorised(header, tokens) is ok
    assert guard.authorised(header, ()) is True  # no token configured: loopback only


def test_serving_off_loopback_needs_a_token():
    guard.require_token_off_loopback("127.0.0.1", ())
    guard.require_token_off_loopback("0.0.0.0", (b"a-token-of-12chars",))
    with pytest.raises(UserError, match="needs an API token"):
        guard.require_token_off_loopback("0.0.0.0", ())


def test_the_serving_command_refuses_0_0_0_0_without_a_token_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HMSS_API_TOKEN")}
    command = [
        sys.executable,
        "-m",
        "hmss_ray.serving",
        "--model",
        str(tmp_path),
        "--host",
        "0.0.0.0",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "needs an API token" in done.stderr


@pytest.mark.parametrize(
    ("host", "ok"),
    [(b"sct.hospital.example", True), (b"SCT.hospital.example:8000", True), (b"[::1]:80", True),
     (b"evil.example", False), (b"sct.hospital.example.evil", False), (b"\xff", False),
     (None, False)],
)  # fmt: skip
def test_the_host_allow_list(host, ok):
    assert guard.host_allowed(host, ("sct.hospital.example", "[::1]")) is ok
    assert guard.host_allowed(host, ()) is True


def test_an_unexpected_error_is_logged_by_id_without_its_message(caplog):
    try:
        raise ValueError("zip member Doe_Jane_1960/IM1.dcm is broken")
    except ValueError as exc:
        with caplog.at_level(logging.ERROR, logger="hmss.serve"):
            guard.log_unexpected("abc123", exc)
    text = caplog.text
    assert "abc123" in text and "ValueError" in text and "test_rules.py" in text
    assert "Doe_Jane" not in text and "IM1" not in text


def test_scratch_folders_are_private_and_dead_replicas_are_swept(tmp_path):
    import tempfile

    saved = tempfile.tempdir, os.environ.get("TMPDIR")
    try:
        scratch = Scratch(str(tmp_path))
        assert stat.S_IMODE(os.stat(scratch.path).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(scratch.path.parent).st_mode) == 0o700
        with tempfile.NamedTemporaryFile(delete=False) as handle:  # lands in the scratch folder
            assert Path(handle.name).parent == scratch.path
        scratch.clear()
        assert not any(scratch.path.iterdir())
    finally:
        tempfile.tempdir = saved[0]
        os.environ.pop("TMPDIR") if saved[1] is None else os.environ.update(TMPDIR=saved[1])
    dead = scratch.path.parent / "r999999999-abcd"  # no such pid
    dead.mkdir()
    (dead / "upload.nrrd").write_bytes(b"PHI")
    assert sweep_dead(scratch.path.parent) == 1 and not dead.exists() and scratch.path.exists()
    os.chmod(scratch.path.parent, 0o755)
    with pytest.raises(UserError, match="not a private folder"):
        parent_folder(str(tmp_path))


@pytest.mark.parametrize(
    ("fields", "words"),
    [({"id": "A1\\B2"}, "backslash"), ({"name": "Doe\x07^Jane"}, "control"),
     ({"id": "P1\r\n"}, "control"), ({"name": "Doe^Jane=Ideographic"}, "no '='"),
     ({"name": "a^b^c^d^e^f"}, "Family"), ({"id": "x" * 65}, "64")],
)  # fmt: skip
def test_patient_fields_are_single_valued_and_clean(fields, words):
    with pytest.raises(UserError, match=words):
        PatientFields(**fields)


def _volume() -> Volume:
    return Volume(np.arange(4 * 4 * 3, dtype=np.int16).reshape(4, 4, 3), np.eye(4))


def test_series_use_the_uid_root_and_appear_whole(tmp_path):
    root = "1.2.826.0.1.3680043.10.25."
    out = write_dicom_series(_volume(), tmp_path / "sct", SeriesInfo(uid_root=root))
    files = sorted(out.iterdir())
    assert len(files) == 3 and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    ds = pydicom.dcmread(files[0])
    for uid in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID):
        assert uid.startswith(root)
    default = pydicom.dcmread(next((write_dicom_series(_volume(), tmp_path / "d")).iterdir()))
    assert default.SeriesInstanceUID.startswith(pydicom.uid.PYDICOM_ROOT_UID)
    zipped = write_dicom_series(_volume(), tmp_path / "s.zip", SeriesInfo(uid_root=root))
    assert len(zipfile.ZipFile(zipped).namelist()) == 3
    with pytest.raises(ConfigError, match="uid_root"):
        IOConfig(uid_root="1.2.x.")


def test_outputs_never_replace_the_input_nor_an_existing_file_unasked(tmp_path):
    mr = tmp_path / "mr.nii.gz"
    mr.write_bytes(b"MR")
    series = tmp_path / "dicom"
    series.mkdir()
    with pytest.raises(UserError, match="the input"):
        check_output_target(mr, [mr], overwrite=True)
    with pytest.raises(UserError, match="the input"):
        check_output_target(series / "sct.nii.gz", [series])
    with pytest.raises(UserError, match="the input"):
        check_output_target(tmp_path, [series])
    (tmp_path / "sct.nii.gz").write_bytes(b"old")
    with pytest.raises(UserError, match="--overwrite"):
        check_output_target(tmp_path / "sct.nii.gz", [mr])
    assert check_output_target(tmp_path / "sct.nii.gz", [mr, None], overwrite=True)


def test_the_client_refuses_an_existing_output_before_sending(tmp_path, capsys):
    from hmss_ray import client

    mr = tmp_path / "mr.nii.gz"
    mr.write_bytes(b"MR")
    (tmp_path / "sct.nii.gz").write_bytes(b"old")
    url = "http://127.0.0.1:9"  # nothing listens: a refusal must come before any request
    assert client.main([str(mr), "-o", str(tmp_path / "sct.nii.gz"), "--url", url]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert client.main([str(mr), "-o", str(mr), "--overwrite", "--url", url]) == 2
    assert (tmp_path / "sct.nii.gz").read_bytes() == b"old" and mr.read_bytes() == b"MR"


def test_the_deployment_config_checks_its_security_keys():
    for bad in ({"min_upload_kbps": 0}, {"request_timeout_s": 0}, {"max_queued_requests": 0},
                {"max_buffered_mb": -1}, {"max_waiting": -1}):  # fmt: skip
        with pytest.raises(ConfigError):
            ServeConfig(**bad)
