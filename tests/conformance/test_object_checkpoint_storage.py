"""ObjectCheckpointStorage beyond the conformance suite, on a real S3 server (SeaweedFS): incremental
uploads, collection of shared objects, damaged objects, configuration errors, failed uploads."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from eventapp import (
    CheckpointConfig,
    ConfigurationError,
    ObjectCheckpointStorage,
    ObjectStoreError,
    S3Settings,
    SnapshotCorruptError,
    SnapshotMissingError,
)
from eventapp.checkpoint.object_manifest import INLINE_MAX_BYTES
from eventapp.checkpoint.object_transfer import HEAD_MIN_BYTES
from eventapp.checkpoint.storage import snapshot_name
from eventapp.objectstore import ObjectLocation, S3ObjectStore
from tests.support.seaweedfs import S3Server

JOB, SPLIT = "orders", "orders-0"
PREFIX = f"checkpoints/{JOB}/{SPLIT}/"


def make(server: S3Server, bucket: str, cache: Path, **kwargs: object) -> ObjectCheckpointStorage:
    """A storage that stores every file as an object (``inline_max_bytes=0``) unless told otherwise:
    these tests are about objects; test_small_files_are_kept_inline_in_the_metadata is about the rest."""
    kwargs.setdefault("inline_max_bytes", 0)
    return ObjectCheckpointStorage(
        f"s3://{bucket}/checkpoints", settings=server.settings(), cache_dir=cache, **kwargs
    )  # type: ignore[arg-type]


def write(storage: ObjectCheckpointStorage, name: str, files: dict[str, bytes | Path]) -> Path:
    directory = storage.begin(JOB, SPLIT, name)
    for relative, data in files.items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, Path):
            os.link(data, target)  # as RocksDB snapshots share unchanged files
        else:
            target.write_bytes(data)
    return storage.complete(JOB, SPLIT, name, {"snapshot": name})


def keys(storage: ObjectCheckpointStorage, prefix: str = PREFIX) -> set[str]:
    return {info.key.removeprefix(prefix) for info in storage.store.list(prefix)}


def test_unchanged_files_are_uploaded_once(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    storage = make(s3_server, s3_bucket, tmp_path / "cache")
    big = b"a" * HEAD_MIN_BYTES  # large enough to be looked for (HEAD) after a restart
    first = write(
        storage,
        snapshot_name(1, "a"),
        {"db/1.sst": big, "db/2.sst": b"b" * 7000, "db/MANIFEST-1": b"m1", "db/OPTIONS": b"o"},
    )
    assert storage.transfers.puts == 4  # two SSTs, MANIFEST, OPTIONS (split.json is in the metadata)
    write(
        storage,
        snapshot_name(2, "a"),
        {
            "db/1.sst": first / "db/1.sst",
            "db/2.sst": first / "db/2.sst",
            "db/3.sst": b"c" * 10,
            "db/MANIFEST-2": b"m2",
            "db/OPTIONS": b"o",  # a copy, not a link: same content, not uploaded again
        },
    )
    assert storage.transfers.puts == 4 + 2  # only 3.sst and MANIFEST-2
    assert len([k for k in keys(storage) if k.startswith("shared/")]) == 6
    assert sorted(k for k in keys(storage) if not k.startswith("shared/")) == sorted(
        f"{n}/_snapshot.json" for n in (snapshot_name(1, "a"), snapshot_name(2, "a"))
    )

    restarted = make(s3_server, s3_bucket, tmp_path / "cache")  # a new process: checks with HEAD
    write(restarted, snapshot_name(3, "b"), {"db/1.sst": big, "db/MANIFEST-3": b"m3"})
    assert restarted.transfers.puts == 1  # MANIFEST-3; 1.sst was found


def test_small_files_are_kept_inline_in_the_metadata(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    storage = make(s3_server, s3_bucket, tmp_path / "cache", inline_max_bytes=INLINE_MAX_BYTES)
    name = snapshot_name(1, "a")
    big = b"s" * (INLINE_MAX_BYTES + 1)
    write(
        storage, name, {"db/1.sst": big, "db/CURRENT": b"MANIFEST-1\n", "db/OPTIONS": b"o" * INLINE_MAX_BYTES}
    )
    assert storage.transfers.puts == 1  # only the large file is an object of its own
    assert sorted(keys(storage)) == sorted(
        [f"shared/{hashlib.sha256(big).hexdigest()}-{len(big)}.sst", f"{name}/_snapshot.json"]
    )
    path, _ = make(s3_server, s3_bucket, tmp_path / "fresh", inline_max_bytes=0).open(JOB, SPLIT, name)
    assert (path / "db/CURRENT").read_bytes() == b"MANIFEST-1\n" and (path / "db/1.sst").read_bytes() == big
    assert (path / "db/OPTIONS").read_bytes() == b"o" * INLINE_MAX_BYTES
    # An inline file is verified like an object: damaged in the metadata, the snapshot is refused.
    meta_key = f"{PREFIX}{name}/_snapshot.json"
    manifest = json.loads(storage.store.get_bytes(meta_key))
    manifest["files"]["db/CURRENT"]["inline"] = base64.b64encode(b"MANIFEST-9\n").decode()
    storage.store.put_bytes(meta_key, json.dumps(manifest).encode())
    with pytest.raises(SnapshotCorruptError, match="db/CURRENT"):
        make(s3_server, s3_bucket, tmp_path / "fresh-2").open(JOB, SPLIT, name)


def test_delete_collects_only_unreferenced_shared_objects(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    storage = make(s3_server, s3_bucket, tmp_path / "cache")
    write(storage, snapshot_name(1, "a"), {"db/1.sst": b"old", "db/2.sst": b"kept"})
    write(storage, snapshot_name(2, "a"), {"db/2.sst": b"kept", "db/3.sst": b"new"})
    other_split = f"checkpoints/{JOB}/orders-1/"
    storage.store.put_bytes(f"{other_split}shared/unrelated.sst", b"x")
    shared_before = {k for k in keys(storage) if k.startswith("shared/")}
    storage.delete(JOB, SPLIT, snapshot_name(1, "a"))
    shared_after = {k for k in keys(storage) if k.startswith("shared/")}
    assert len(shared_before) == 3 and len(shared_after) == 2
    assert not [k for k in keys(storage) if k.startswith(snapshot_name(1, "a"))]
    assert keys(storage, other_split) == {"shared/unrelated.sst"}  # another split is never touched
    path, _ = make(s3_server, s3_bucket, tmp_path / "other-cache").open(JOB, SPLIT, snapshot_name(2, "a"))
    assert (path / "db/2.sst").read_bytes() == b"kept"


def test_delete_spares_shared_objects_an_upload_relies_on(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    storage = make(s3_server, s3_bucket, tmp_path / "cache")
    write(storage, snapshot_name(1, "a"), {"db/1.sst": b"shared"})
    (shared,) = [f"{PREFIX}{k}" for k in keys(storage) if k.startswith("shared/")]
    with storage.transfers.shared.in_flight(f"{PREFIX}shared/", [shared]):
        storage.delete(JOB, SPLIT, snapshot_name(1, "a"))
    assert storage.store.head(shared) is not None
    assert storage.transfers.shared.known(shared)


@pytest.mark.parametrize("damage", ["truncate", "remove"])
def test_damaged_objects_are_refused_naming_the_key(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, damage: str
) -> None:
    storage = make(s3_server, s3_bucket, tmp_path / "cache")
    name = snapshot_name(1, "a")
    write(storage, name, {"db/1.sst": b"x" * 1000, "db/OPTIONS-1": b"options"})
    (shared,) = [f"{PREFIX}{k}" for k in keys(storage) if k.startswith("shared/") and k.endswith(".sst")]
    if damage == "truncate":
        storage.store.put_bytes(shared, b"x" * 10)
        error: type[Exception] = SnapshotCorruptError
    else:
        storage.store.delete_many([shared])
        error = SnapshotMissingError
    with pytest.raises(error, match=re.escape(f"s3://{s3_bucket}/{shared}")):
        make(s3_server, s3_bucket, tmp_path / "fresh-cache").open(JOB, SPLIT, name)


def test_a_truncated_local_cache_is_downloaded_again(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    storage = make(s3_server, s3_bucket, tmp_path / "cache")
    stored = write(storage, snapshot_name(1, "a"), {"db/1.sst": b"x" * 1000})
    (stored / "db/1.sst").unlink()
    (stored / "db/1.sst").write_bytes(b"x")
    path, _ = storage.open(JOB, SPLIT, snapshot_name(1, "a"))
    assert (path / "db/1.sst").read_bytes() == b"x" * 1000


class FailingStore(S3ObjectStore):
    """The real store, failing the ``fail_at``-th file upload (fault injection)."""

    def __init__(self, bucket: str, settings: S3Settings, fail_at: int) -> None:
        super().__init__(bucket, settings)
        self.fail_at = fail_at
        self.calls = 0

    def put_file(self, key: str, path: Path) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise ObjectStoreError(f"injected failure uploading {key}")
        super().put_file(key, path)


def test_a_snapshot_whose_upload_failed_is_not_listed(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    store = FailingStore(s3_bucket, s3_server.settings(max_workers=1), fail_at=2)
    storage = ObjectCheckpointStorage(
        f"s3://{s3_bucket}/checkpoints", store=store, cache_dir=tmp_path / "cache", inline_max_bytes=0
    )
    name = snapshot_name(1, "a")
    with pytest.raises(ObjectStoreError, match="injected failure"):
        write(storage, name, {"db/1.sst": b"1", "db/2.sst": b"2", "db/3.sst": b"3"})
    assert storage.list_snapshots(JOB, SPLIT) == []
    with pytest.raises(SnapshotMissingError):
        make(s3_server, s3_bucket, tmp_path / "other").open(JOB, SPLIT, name)
    write(storage, snapshot_name(2, "a"), {"db/1.sst": b"1"})  # the next checkpoint works
    assert [s.name for s in storage.list_snapshots(JOB, SPLIT)] == [snapshot_name(2, "a")]


def test_a_missing_bucket_is_named(s3_server: S3Server, tmp_path: Path) -> None:
    storage = make(s3_server, "no-such-bucket-eventapp", tmp_path / "cache")
    with pytest.raises(ObjectStoreError, match="no-such-bucket-eventapp"):
        storage.list_snapshots(JOB, SPLIT)
    with pytest.raises(ObjectStoreError, match="bucket 'no-such-bucket-eventapp' does not exist"):
        storage.store.check()


def test_an_unreachable_endpoint_is_named(tmp_path: Path) -> None:
    settings = S3Settings(
        endpoint_url="http://127.0.0.1:9",
        access_key_id="a",
        secret_access_key="b",
        max_attempts=1,
        connect_timeout_s=2,
    )
    storage = ObjectCheckpointStorage("s3://some-bucket/x", settings=settings, cache_dir=tmp_path)
    with pytest.raises(
        ObjectStoreError, match=re.escape("at http://127.0.0.1:9 failed: cannot reach the endpoint")
    ):
        storage.list_snapshots(JOB, SPLIT)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://", "names no bucket"),
        ("s3://A_B/x", "not a valid S3 bucket name"),
        ("s3://bucket/a//b", "empty, '.' or '..' component"),
        ("gs://bucket/x", "unsupported scheme"),
    ],
)
def test_bad_uris_are_refused_at_configuration(uri: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        CheckpointConfig(storage=uri)


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="both access_key_id and secret_access_key"):
        S3Settings(access_key_id="x")
    with pytest.raises(ConfigurationError, match="http:// or https://"):
        S3Settings(endpoint_url="localhost:8333")
    with pytest.raises(ConfigurationError, match="max_workers"):
        S3Settings(max_workers=0)
    assert "secret" not in repr(S3Settings(access_key_id="x", secret_access_key="secret"))


def test_an_s3_uri_resolves_from_the_aws_environment(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id or "any")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key or "any")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    storage = CheckpointConfig(storage=f"s3://{s3_bucket}/env/prefix").resolved_storage()
    assert isinstance(storage, ObjectCheckpointStorage)
    assert storage.location == ObjectLocation(s3_bucket, "env/prefix")
    storage.mark_committed(JOB, SPLIT, snapshot_name(1, "a"))
    assert (
        storage.store.list("env/prefix/")[0].key
        == f"env/prefix/{JOB}/{SPLIT}/_committed/{snapshot_name(1, 'a')}"
    )
