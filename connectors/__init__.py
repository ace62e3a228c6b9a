"""Connectors: sources, sinks and commit points for external systems.

This folder is installed as ``eventapp.connectors`` (``[tool.setuptools.package-dir]`` in
``pyproject.toml``); import it only by that name, e.g. ``eventapp.connectors.kafka``. Modules inside
import each other relatively and the core only through ``eventapp.*``, so mypy checks the folder as
it lies on disk.
"""

if __name__ != "eventapp.connectors":
    raise ImportError(
        f"this folder is the package eventapp.connectors, imported here as {__name__!r}: import "
        f"eventapp.connectors (a second name would load second copies of every class)"
    )
