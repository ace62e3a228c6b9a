"""Logging setup: structlog with stable event names and key-value context.

JSON lines when stdout is not a terminal (production, CI), readable colour output when it is.
Event names are stable and dotted (``job.started``, ``checkpoint.completed``,
``record.dead_lettered``, ``split.restored``); context keys are ``job``, ``split``, ``operator``,
``checkpoint_id``, ``position`` and the like.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

__all__ = ["configure_logging"]


def configure_logging(*, json: bool | None = None, level: str | int | None = None) -> None:
    """Configure structlog for eventapp and the application.

    ``json``: force JSON (True) or console (False) output; default: JSON unless stdout is a tty.
    ``level``: minimum level (default from ``EVENTAPP_LOG_LEVEL``, else ``INFO``).
    """
    if level is None:
        level = os.environ.get("EVENTAPP_LOG_LEVEL", "INFO")
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        numeric = logging.INFO
    if json is None:
        json = not sys.stdout.isatty()
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # No explicit file: every line goes to the sys.stdout of the moment (tests swap it).
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=False,
    )
