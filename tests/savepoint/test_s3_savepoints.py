"""Savepoints in an object store (a real SeaweedFS, ``tests/support/seaweedfs.py``): a RocksDB
savepoint created to ``s3://``, inspected, restored (state equal to the oracle), copied both ways and
server-side, disposed (nothing else touched); overwriting, missing and truncated objects are refused;
``--from-checkpoint s3://...`` restores snapshots of object checkpoint storage; an upload writes
``_metadata`` last and leaves no partial savepoint when it fails."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventapp import RestoreRequest, Savepoint, SavepointError, create_savepoint
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.errors import ObjectStoreError, RestoreError
from eventapp.objectstore import S3ObjectStore
from eventapp.objectstore.tree import download_tree, upload_tree
from eventapp.partitioning import murmur2
from eventapp.savepoint.create import CreatedSavepoint
from eventapp.savepoint.remote import (
    copy_savepoint,
    create_savepoint_at,
    dispose_savepoint,
    fetch_savepoint,
)
from tests.savepoint.test_savepoints import (
    JOB,
    KEYS,
    PHASE1,
    Count,
    Record,
    _storage,
    backend,
    make_job,
    partition_of,
    run_phase1,
)
from tests.support.seaweedfs import S3Server

SPLITS4 = [f"collection-{i}" for i in range(4)]


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[S3Server]:
    """The standard AWS environment pointing at the test server (what the CLI and workers use)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_REGION", os.environ.get("AWS_REGION", "us-east-1"))
    if s3_server.access_key_id is not None and s3_server.secret_access_key is not None:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    monkeypatch.setenv("EVENTAPP_SAVEPOINT_CACHE", str(tmp_path / "savepoint-cache"))
    yield s3_server


def objects(server: S3Server, bucket: str, prefix: str = "") -> dict[str, tuple[int, str]]:
    """Every object under ``prefix``: key -> (size, ETag)."""
    found: dict[str, tuple[int, str]] = {}
    for page in server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = (item["Size"], item["ETag"])
    return found


def creator(storage: Path, *, native: bool) -> Any:
    def create(directory: Path) -> CreatedSavepoint:
        return create_savepoint(
            _storage(storage),
            JOB,
            SPLITS4,
            directory,
            max_parallelism=128,
            partitioner="murmur2",
            native=native,
        )

    return create


def uploaded_savepoint(tmp_path: Path, bucket: str, *, native: bool = False) -> tuple[str, dict[str, int]]:
    """A RocksDB savepoint of phase 1 created with an s3:// target; its URI and the counts."""
    storage, counts = run_phase1(tmp_path, "rocksdb")
    uri, created = create_savepoint_at(f"s3://{bucket}/savepoints", creator(storage, native=native))
    assert uri == f"s3://{bucket}/savepoints/{created.path.name}"
    assert not created.path.exists()  # the local copy is removed once uploaded
    return uri, dict(counts)


def restore_and_continue(tmp_path: Path, name: str, restore: RestoreRequest) -> list[str]:
    more: list[Record] = [(k, 1) for k in KEYS]
    source = CollectionSource(PHASE1 + more, splits=4, partitioner=partition_of(4, 4), bounded=False)
    sink: CollectionSink[str] = CollectionSink()
    job = make_job(source, sink, tmp_path / f"chk-{name}", backend("rocksdb", tmp_path / f"rocks-{name}"))
    runner = job.runner(restore=restore)
    try:
        runner.run_until_idle()
        runner.checkpoint()
    finally:
        runner.close()
    return sink.values


@pytest.mark.parametrize("native", [False, True], ids=["canonical", "native"])
def test_rocksdb_savepoint_created_to_s3_inspects_restores_and_copies(
    s3_env: S3Server, s3_bucket: str, tmp_path: Path, native: bool
) -> None:
    uri, counts = uploaded_savepoint(tmp_path, s3_bucket, native=native)
    prefix = uri.removeprefix(f"s3://{s3_bucket}/")
    stored = objects(s3_env, s3_bucket)
    assert f"{prefix}/_metadata" in stored and any(k.startswith(f"{prefix}/state/") for k in stored)

    opened = Savepoint.open(uri)  # downloaded into the cache, verified
    assert opened.source == uri and opened.path.is_relative_to(tmp_path / "savepoint-cache")
    assert dict(opened.read_state("count", Count.count)) == counts
    assert Savepoint.open(uri).path == opened.path  # the cached copy is used again

    values = restore_and_continue(tmp_path, "restored", RestoreRequest(from_savepoint=uri))
    assert sorted(values) == sorted(f"{k}={counts[k] + 1}" for k in KEYS)
    assert objects(s3_env, s3_bucket) == stored  # never modified

    local = Path(copy_savepoint(uri, tmp_path / "copied" / "sp"))
    assert dict(Savepoint.open(local).read_state("count", Count.count)) == counts
    back = copy_savepoint(local, f"s3://{s3_bucket}/back/sp")
    other_bucket = s3_env.new_bucket()
    across = copy_savepoint(back, f"s3://{other_bucket}/moved/sp")  # server-side, another bucket
    assert across == f"s3://{other_bucket}/moved/sp"
    fresh = fetch_savepoint(across, cache_dir=tmp_path / "other-cache")
    assert dict(Savepoint.open(fresh).read_state("count", Count.count)) == counts
    assert Savepoint.open(fresh).metadata == opened.metadata


def test_dispose_deletes_the_savepoint_and_nothing_beside_it(
    s3_env: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    uri, _ = uploaded_savepoint(tmp_path, s3_bucket)
    prefix = uri.removeprefix(f"s3://{s3_bucket}/")
    client = s3_env.client()
    beside = {"savepoints/unrelated.txt", f"{prefix}-sibling/_metadata", f"{prefix}x", "other/data"}
    for key in beside:
        client.put_object(Bucket=s3_bucket, Key=key, Body=b"keep me")
    deleted = dispose_savepoint(uri)
    assert deleted > 1
    assert set(objects(s3_env, s3_bucket)) == beside
    with pytest.raises(SavepointError, match=re.escape(f"there is no savepoint at {uri}")):
        dispose_savepoint(uri)
    with pytest.raises(SavepointError, match="is a whole bucket"):
        dispose_savepoint(f"s3://{s3_bucket}")
    assert set(objects(s3_env, s3_bucket)) == beside


def test_dispose_refuses_checkpoint_storage_and_nested_savepoints(
    s3_env: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    local = tmp_path / "sp"
    storage, _ = run_phase1(tmp_path, "memory")
    created = creator(storage, native=False)(local)
    copy_savepoint(created.path, f"s3://{s3_bucket}/a/sp")
    copy_savepoint(created.path, f"s3://{s3_bucket}/a/sp/inner")
    s3_env.client().put_object(Bucket=s3_bucket, Key="a/sp/inner/_metadata", Body=b"x")
    before = objects(s3_env, s3_bucket)
    with pytest.raises(SavepointError, match="holds another savepoint"):
        dispose_savepoint(f"s3://{s3_bucket}/a/sp")
    copy_savepoint(created.path, f"s3://{s3_bucket}/b/sp")
    s3_env.client().put_object(Bucket=s3_bucket, Key="b/sp/job/split/chk-1/_snapshot.json", Body=b"{}")
    with pytest.raises(SavepointError, match="an object of checkpoint storage"):
        dispose_savepoint(f"s3://{s3_bucket}/b/sp")
    assert set(before) <= set(objects(s3_env, s3_bucket))


def test_copy_refuses_to_overwrite_and_checks_the_source(
    s3_env: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    uri, _ = uploaded_savepoint(tmp_path, s3_bucket)
    target = f"s3://{s3_bucket}/copy/sp"
    copy_savepoint(uri, target)
    before = objects(s3_env, s3_bucket)
    with pytest.raises(SavepointError, match="refusing to overwrite"):
        copy_savepoint(uri, target)
    (tmp_path / "exists").mkdir()
    with pytest.raises(SavepointError, match="refusing to overwrite"):
        copy_savepoint(uri, tmp_path / "exists")
    (tmp_path / "plain").mkdir()
    with pytest.raises(SavepointError, match="holds no _metadata"):
        copy_savepoint(tmp_path / "plain", f"s3://{s3_bucket}/copy/plain")
    with pytest.raises(SavepointError, match="there is no savepoint at"):
        copy_savepoint(f"s3://{s3_bucket}/nothing", tmp_path / "nothing")
    assert objects(s3_env, s3_bucket) == before
    assert not (tmp_path / "nothing").exists()


def test_missing_or_truncated_objects_are_refused_naming_them(
    s3_env: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    uri, _ = uploaded_savepoint(tmp_path, s3_bucket)
    prefix = uri.removeprefix(f"s3://{s3_bucket}/")
    client = s3_env.client()
    state_key = sorted(k for k in objects(s3_env, s3_bucket) if k.startswith(f"{prefix}/state/"))[0]
    body = client.get_object(Bucket=s3_bucket, Key=state_key)["Body"].read()
    client.put_object(Bucket=s3_bucket, Key=state_key, Body=body[: len(body) // 2])
    with pytest.raises(SavepointError, match=re.escape(f"s3://{s3_bucket}/{state_key}") + ".*truncated"):
        Savepoint.open(uri)
    with pytest.raises(SavepointError, match=re.escape(f"s3://{s3_bucket}/{state_key}")):
        restore_and_continue(tmp_path, "refused", RestoreRequest(from_savepoint=uri))
    client.put_object(Bucket=s3_bucket, Key=state_key, Body=body[:-1] + bytes([body[-1] ^ 1]))
    with pytest.raises(SavepointError, match="fails its SHA-256 check"):
        Savepoint.open(uri)  # same size, other content: the downloaded copy's checksum
    client.delete_object(Bucket=s3_bucket, Key=state_key)
    with pytest.raises(SavepointError, match=re.escape(f"s3://{s3_bucket}/{state_key}") + ".*missing"):
        Savepoint.open(uri)
    client.delete_object(Bucket=s3_bucket, Key=f"{prefix}/_metadata")
    with pytest.raises(SavepointError, match=re.escape(f"there is no savepoint at {uri}")):
        Savepoint.open(uri)
    assert not list((tmp_path / "savepoint-cache").glob("*"))  # nothing partial is ever cached


def test_missing_bucket_and_unreachable_endpoint_are_object_store_errors(
    s3_env: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    with pytest.raises(ObjectStoreError, match="does not exist"):
        Savepoint.open("s3://no-such-bucket-eventapp/sp")
    storage, _ = run_phase1(tmp_path, "memory")
    with pytest.raises(ObjectStoreError, match="does not exist"):
        create_savepoint_at("s3://no-such-bucket-eventapp/sps", creator(storage, native=False))
    settings = s3_env.settings(endpoint_url="http://127.0.0.1:9", max_attempts=1)
    with pytest.raises(ObjectStoreError, match="cannot reach the endpoint"):
        fetch_savepoint(f"s3://{s3_bucket}/sp", settings=settings)


class RecordingStore(S3ObjectStore):
    """The real store, recording the order of uploads and failing the ``fail_at``-th (if set)."""

    def __init__(self, *args: Any, fail_at: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.puts: list[str] = []
        self.fail_at = fail_at

    def put_file(self, key: str, path: Path) -> None:
        self.puts.append(key)
        if self.fail_at is not None and len(self.puts) >= self.fail_at:
            raise ObjectStoreError(f"injected failure uploading {key}")
        super().put_file(key, path)


def test_upload_writes_metadata_last_and_a_failed_one_is_no_savepoint(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    storage, counts = run_phase1(tmp_path, "rocksdb")
    created = creator(storage, native=True)(tmp_path / "sp")
    store = RecordingStore(s3_bucket, s3_server.settings())
    upload_tree(store, created.path, "sp", last=["_metadata"], workers=4)
    assert store.puts[-1] == "sp/_metadata" and len(store.puts) > 3
    failing = RecordingStore(s3_bucket, s3_server.settings(), fail_at=2)
    with pytest.raises(ObjectStoreError, match="injected failure"):
        upload_tree(failing, created.path, "broken", last=["_metadata"], workers=1)
    assert failing.head("broken/_metadata") is None  # never visible as a savepoint
    download_tree(store, "sp", tmp_path / "down")
    assert dict(Savepoint.open(tmp_path / "down").read_state("count", Count.count)) == counts
    with pytest.raises(ObjectStoreError, match="it exists"):
        download_tree(store, "sp", tmp_path / "down")
    store.close()
    failing.close()


def test_from_checkpoint_s3_restores_snapshots_of_object_storage(
    s3_env: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    root = f"s3://{s3_bucket}/checkpoints"
    source = CollectionSource(PHASE1, splits=4, partitioner=partition_of(4, 4), bounded=False)
    job = make_job(source, CollectionSink(), root, backend("rocksdb", tmp_path / "rocks1"))  # type: ignore[arg-type]
    runner = job.runner()
    runner.run_until_idle()
    runner.checkpoint()
    runner.close()
    counts = Counter(k for k, _ in PHASE1)
    before = objects(s3_env, s3_bucket)
    assert any(k.endswith("/_snapshot.json") for k in before)

    values = restore_and_continue(tmp_path, "job-level", RestoreRequest(from_checkpoint=f"{root}/{JOB}"))
    assert sorted(values) == sorted(f"{k}={counts[k] + 1}" for k in KEYS)
    # One split's snapshot by its full path; the other splits start from empty state (and read
    # phase 1 again).
    snapshot_key = next(k for k in before if k.startswith(f"checkpoints/{JOB}/collection-1/chk-"))
    snapshot_uri = f"s3://{s3_bucket}/{snapshot_key.removesuffix('/_snapshot.json')}"
    for name, uri in (("split-level", f"{root}/{JOB}/collection-1"), ("snapshot-level", snapshot_uri)):
        values = restore_and_continue(tmp_path, name, RestoreRequest(from_checkpoint=uri))
        split1 = {v for v in values if murmur2(v.split("=")[0].encode()) % 4 == 1}
        assert split1 == {f"{k}={counts[k] + 1}" for k in KEYS if murmur2(k.encode()) % 4 == 1}
    assert objects(s3_env, s3_bucket) == before  # never modified
    with pytest.raises(RestoreError, match="of job 'other-job', not of 'sp-job'"):
        restore_and_continue(tmp_path, "other-job", RestoreRequest(from_checkpoint=f"{root}/other-job"))
