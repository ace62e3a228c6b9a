"""Connectors: sources, sinks and commit points for external systems.

Import them through the installed package, e.g. ``eventapp.connectors.kafka``; the top-level
``connectors/`` folder is mapped into ``eventapp.connectors`` and is never imported as ``connectors``.
"""
