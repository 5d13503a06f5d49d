"""Ray's run state through :func:`hmss_ray.patient_fs.patient`: an S3 outage (moto on 127.0.0.1
stopped, started again 2 s later) delays a write, a read and a listing; none fails."""

from __future__ import annotations

import pickle
import threading
import time

import pyarrow.fs as pafs
import pytest

from bench import chaos
from hmss_ray import storage
from hmss_ray.patient_fs import patient


@pytest.fixture
def outage_s3(monkeypatch: pytest.MonkeyPatch):
    s3 = chaos.Moto()
    for key, value in chaos.s3_env(s3.port).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HMSS_S3_ATTEMPTS", "8")
    monkeypatch.setenv("HMSS_S3_BACKOFF_S", "0.2")
    yield s3
    s3.stop()


def test_state_written_and_read_during_an_outage_arrives_whole(outage_s3):
    bucket = chaos.make_bucket(outage_s3.port)
    fs, root = storage.resolve(f"{bucket}/runs/r1")
    kept = patient(fs)
    assert patient(pafs.LocalFileSystem()).type_name == "local"
    kept = pickle.loads(pickle.dumps(kept))  # as Ray sends it to its workers
    with kept.open_output_stream(f"{root}/before.json") as f:
        f.write(b'{"epoch": 1}')
    outage_s3.stop()
    threading.Thread(target=lambda: (time.sleep(2.0), outage_s3.start()), daemon=True).start()
    t0 = time.monotonic()
    with kept.open_output_stream(f"{root}/checkpoint_manager_snapshot.json") as f:
        f.write(b'{"epoch": 2}')
    assert time.monotonic() - t0 >= 1.5  # it waited for S3
    with kept.open_input_stream(f"{root}/before.json") as f:
        assert f.read() == b'{"epoch": 1}'
    kept.create_dir(f"{root}/checkpoint_1", recursive=True)
    kept.copy_file(f"{root}/before.json", f"{root}/checkpoint_1/copy.json")
    names = [i.base_name for i in kept.get_file_info(pafs.FileSelector(root))]
    assert sorted(names) == ["before.json", "checkpoint_1", "checkpoint_manager_snapshot.json"]
    kept.delete_dir_contents(f"{root}/checkpoint_1", missing_dir_ok=True)
    kept.delete_file(f"{root}/before.json")
    assert storage.read_json(f"{bucket}/runs/r1/checkpoint_manager_snapshot.json") == {"epoch": 2}
