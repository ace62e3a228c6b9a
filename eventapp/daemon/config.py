"""The job manager's configuration (``eventapp run --parallelism N`` builds it from its options)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from eventapp.daemon.restart import ExponentialDelayRestart, RestartStrategy
from eventapp.errors import ConfigurationError

__all__ = ["DEFAULT_URL", "JobManagerConfig"]

#: Where clients find the job manager's REST API by default (Flink's port, loopback).
DEFAULT_URL = "http://127.0.0.1:8081"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class JobManagerConfig:
    """How the job manager runs (``eventapp run --parallelism N`` builds one from its options)."""

    #: The job: ``package.module:attribute`` (each worker imports it).
    target: str
    parallelism: int
    restart_strategy: RestartStrategy = field(default_factory=ExponentialDelayRestart)
    rest_host: str = "127.0.0.1"
    #: 8081 as Flink's; 0 picks a free port (logged with ``jobmanager.started``, field ``rest``).
    rest_port: int = 8081
    #: Required when ``rest_host`` is not a loopback address; non-GET requests must then carry
    #: ``Authorization: Bearer <token>`` (also checked on loopback when set).
    rest_token: str | None = None
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    #: How often workers report their splits (seconds).
    report_interval_s: float = 1.0
    #: Restore options (``--from-savepoint DIR`` ...) for each worker until it completed a checkpoint.
    restore_args: tuple[str, ...] = ()
    json_logs: bool | None = None
    #: Workers in the source's consumer group (``--group``): the group assigns the splits, each
    #: worker has the static membership id ``<job>-<host>-<slot>``.
    group: bool = False
    #: After the job ended, how long the REST API stays up for clients to fetch a savepoint's
    #: result (it shuts down as soon as every trigger's result was fetched).
    linger_s: float = 30.0

    def __post_init__(self) -> None:
        if self.parallelism < 1:
            raise ConfigurationError(
                f"--parallelism must be >= 1 (the number of task slots), got {self.parallelism}"
            )
        if not 0 <= self.rest_port <= 65535:
            raise ConfigurationError(f"--rest-port must be a port number (0-65535), got {self.rest_port}")
        if self.report_interval_s <= 0:
            raise ConfigurationError(f"report interval must be > 0 s, got {self.report_interval_s}")
        if not _is_loopback(self.rest_host) and not self.rest_token:
            raise ConfigurationError(
                f"--rest-host {self.rest_host} exposes the REST API beyond this machine, so its control "
                f"calls need a token: pass --rest-token-file PATH (or set EVENTAPP_REST_TOKEN); clients "
                f"send it as 'Authorization: Bearer <token>'. Add --rest-tls-cert/--rest-tls-key for TLS"
            )
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ConfigurationError("--rest-tls-cert and --rest-tls-key go together: pass both or neither")
