"""librdkafka's own logs and broker outages, as structlog events.

Every confluent-kafka client eventapp creates gets, through :func:`with_client_logging` (called by the
settings functions of :mod:`eventapp.connectors.kafka.config`):

* ``logger``: a :class:`logging.Logger` whose handler turns each librdkafka log line into a
  ``kafka.client_log`` event (``client``, ``instance``, ``facility``, ``message``; the event's level is
  librdkafka's). Lines are rate limited per client and facility: at most
  :data:`LOG_LINES_PER_INTERVAL` per :data:`LOG_INTERVAL_S`; the next line after a window that
  dropped some is preceded by one ``kafka.client_log_suppressed`` event (``suppressed``, at the
  highest level among them). Debug lines (only there when the user set librdkafka's ``debug=``) are
  never dropped. Without a ``logger`` librdkafka prints raw ``%3|...`` lines to stderr instead.
* ``error_cb``: outage tracking. librdkafka reports ``_ALL_BROKERS_DOWN`` once when every broker it
  knows is down: that starts an outage and one ``kafka.broker_unreachable`` warning
  (``bootstrap_servers``, ``client``, ``unreachable_for_s``, ``reason``, ``repeat=0``). While it lasts,
  the connection errors (``_TRANSPORT``, ``_RESOLVE``, about 20 a second against a closed port) only
  update ``reason`` and repeat the warning at most every :data:`UNREACHABLE_REPEAT_S` with the grown
  ``unreachable_for_s`` (``repeat=1, 2, ...``). A single ``_TRANSPORT``/``_RESOLVE`` error does not
  start an outage: one broker of several restarting, or an idle connection closed by the broker,
  raises it too. ``unreachable_for_s`` counts from the client's creation if it never reached a broker
  (the usual "broker down at start" case), else from when the outage was reported. Other errors are
  already in the log lines (librdkafka logs what it reports) and are only logged at debug level as
  ``kafka.client_error``.
* recovery: ``kafka.broker_reachable_again`` (info; ``client``, ``bootstrap_servers``,
  ``unreachable_for_s``) when a statistics report (``stats_cb``, every
  :data:`STATS_INTERVAL_MS`) lists a broker in state ``UP``, or when eventapp calls
  :func:`mark_reachable` after a broker answered a request. Statistics are parsed only during an
  outage and until the client first reached a broker; they are enabled only for clients eventapp
  polls all the time (``polled=True``: the source consumer, producers), because a client that is
  never polled keeps every report queued in memory.

librdkafka delivers logs, errors and statistics only from the client's ``poll()`` / ``consume()`` /
``flush()`` (confluent-kafka forwards the log queue to the poll queue when ``logger`` is set), in the
thread that polls; the state here is per client and locked. A client that is not polled delivers
nothing (its lines are queued, never printed raw).

A user's own ``logger`` in ``consumer_config``/``producer_config`` wins: eventapp's is not installed
for that client (librdkafka has one logger; the user asked for the raw lines). A user's ``error_cb``
and ``stats_cb`` are wrapped: eventapp's bookkeeping runs first, then the user's callback, whose
exceptions propagate as before. A user's ``statistics.interval.ms`` is kept (``0`` disables the
recovery event for that client).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog
from confluent_kafka import KafkaError

__all__ = [
    "CLIENT_ERROR_EVENT",
    "CLIENT_LOG_EVENT",
    "CLIENT_LOG_SUPPRESSED_EVENT",
    "LOG_INTERVAL_S",
    "LOG_LINES_PER_INTERVAL",
    "REACHABLE_AGAIN_EVENT",
    "STATS_INTERVAL_MS",
    "UNREACHABLE_EVENT",
    "UNREACHABLE_REPEAT_S",
    "ClientLog",
    "client_log_of",
    "mark_reachable",
    "with_client_logging",
]

log = structlog.get_logger(__name__)

CLIENT_LOG_EVENT: Final = "kafka.client_log"
CLIENT_LOG_SUPPRESSED_EVENT: Final = "kafka.client_log_suppressed"
CLIENT_ERROR_EVENT: Final = "kafka.client_error"
UNREACHABLE_EVENT: Final = "kafka.broker_unreachable"
REACHABLE_AGAIN_EVENT: Final = "kafka.broker_reachable_again"

#: At most this many log lines per client and facility in each :data:`LOG_INTERVAL_S` window.
LOG_LINES_PER_INTERVAL: Final = 5
LOG_INTERVAL_S: Final = 30.0
#: An ongoing outage is reported again at most this often.
UNREACHABLE_REPEAT_S: Final = 30.0
#: ``statistics.interval.ms`` of polled clients: how late ``kafka.broker_reachable_again`` may come.
STATS_INTERVAL_MS: Final = 10_000

#: Error codes that mean "cannot talk to the brokers".
_CONNECTIVITY_CODES: Final[frozenset[int]] = frozenset(
    {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE}
)


@dataclass(slots=True)
class _Window:
    start: float
    emitted: int = 0
    suppressed: int = 0
    suppressed_level: int = logging.NOTSET


def _standard_level(levelno: int) -> int:
    """The standard level at or below ``levelno`` (structlog's filtering loggers know only those)."""
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= level:
            return level
    return logging.DEBUG


class _Forward(logging.Handler):
    """Hands the records confluent-kafka logs (``"%s [%s] %s"``, facility, instance, text) to a
    :class:`ClientLog`."""

    def __init__(self, owner: ClientLog) -> None:
        super().__init__(logging.DEBUG)
        self._owner = owner

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._owner.on_log_record(record)
        except Exception:  # noqa: BLE001 - reported the logging way (Handler.handleError)
            self.handleError(record)


class ClientLog:
    """Log forwarding, rate limiting and outage tracking of one client (see the module docstring).

    :param client: eventapp's name for the client, e.g. ``"source-consumer:orders-app"``.
    :param bootstrap_servers: named in the outage events.
    :param clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        client: str,
        bootstrap_servers: str,
        *,
        lines_per_interval: int = LOG_LINES_PER_INTERVAL,
        interval_s: float = LOG_INTERVAL_S,
        repeat_s: float = UNREACHABLE_REPEAT_S,
        clock: Callable[[], float] = time.monotonic,
        user_error_cb: Callable[[KafkaError], Any] | None = None,
        user_stats_cb: Callable[[str], Any] | None = None,
    ) -> None:
        self.client = client
        self.bootstrap_servers = bootstrap_servers
        self._lines = lines_per_interval
        self._interval = interval_s
        self._repeat = repeat_s
        self._clock = clock
        self._user_error_cb = user_error_cb
        self._user_stats_cb = user_stats_cb
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self._created = clock()
        self._ever_reachable = False
        self._down_since: float | None = None
        self._last_report = 0.0
        self._repeats = 0
        self._reason = ""
        self.logger = logging.Logger(f"eventapp.kafka.client.{client}", logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(_Forward(self))

    # -- log lines ------------------------------------------------------------------------------

    def on_log_record(self, record: logging.LogRecord) -> None:
        args = record.args
        if isinstance(args, tuple) and len(args) == 3:
            facility, instance, message = (str(a) for a in args)
        else:
            facility, instance, message = "LOG", "", record.getMessage()
        level = _standard_level(record.levelno)
        summary: tuple[int, int] | None = None
        if level > logging.DEBUG:
            now = self._clock()
            with self._lock:
                window = self._windows.get(facility)
                if window is None or now - window.start >= self._interval:
                    if window is not None and window.suppressed:
                        summary = (window.suppressed, window.suppressed_level)
                    window = self._windows[facility] = _Window(now)
                if window.emitted >= self._lines:
                    window.suppressed += 1
                    window.suppressed_level = max(window.suppressed_level, level)
                    return
                window.emitted += 1
        if summary is not None:
            self._summary(facility, *summary)
        log.log(
            level, CLIENT_LOG_EVENT, client=self.client, instance=instance, facility=facility, message=message
        )

    def _summary(self, facility: str, suppressed: int, level: int) -> None:
        log.log(
            level,
            CLIENT_LOG_SUPPRESSED_EVENT,
            client=self.client,
            facility=facility,
            suppressed=suppressed,
            interval_s=self._interval,
        )

    def flush_suppressed(self) -> None:
        """Report the lines dropped in the current windows now (instead of before the next line)."""
        with self._lock:
            pending = [
                (f, w.suppressed, w.suppressed_level) for f, w in self._windows.items() if w.suppressed
            ]
            for facility, _, _ in pending:
                window = self._windows[facility]
                window.suppressed = 0
                window.suppressed_level = logging.NOTSET
        for facility, suppressed, level in pending:
            self._summary(facility, suppressed, level)

    # -- errors and outages ---------------------------------------------------------------------

    def error_cb(self, error: KafkaError) -> None:
        try:
            self._on_error(error)
        except Exception:
            log.exception("kafka.client_callback_failed", client=self.client, callback="error_cb")
        if self._user_error_cb is not None:
            self._user_error_cb(error)

    def _on_error(self, error: KafkaError) -> None:
        code = error.code()
        if code not in _CONNECTIVITY_CODES:
            log.debug(
                CLIENT_ERROR_EVENT,
                client=self.client,
                error=error.name(),
                reason=error.str(),
                fatal=error.fatal(),
            )
            return
        now = self._clock()
        with self._lock:
            if code != KafkaError._ALL_BROKERS_DOWN:
                self._reason = error.str()
            elif self._down_since is None:
                self._down_since = now if self._ever_reachable else self._created
                self._reason = self._reason or error.str()
                self._repeats = -1
            fields = self._due_report(now)
        if fields is not None:
            log.warning(UNREACHABLE_EVENT, **fields)

    def _due_report(self, now: float) -> dict[str, Any] | None:
        """The fields of a ``kafka.broker_unreachable`` event if one is due now (lock held)."""
        if self._down_since is None or (self._repeats >= 0 and now - self._last_report < self._repeat):
            return None
        self._repeats += 1
        self._last_report = now
        return {
            "client": self.client,
            "bootstrap_servers": self.bootstrap_servers,
            "unreachable_for_s": round(now - self._down_since, 1),
            "reason": self._reason,
            "repeat": self._repeats,
        }

    def stats_cb(self, stats: str) -> None:
        try:
            self._on_stats(stats)
        except Exception:
            log.exception("kafka.client_callback_failed", client=self.client, callback="stats_cb")
        if self._user_stats_cb is not None:
            self._user_stats_cb(stats)

    def _on_stats(self, stats: str) -> None:
        with self._lock:
            if self._ever_reachable and self._down_since is None:
                return  # the common case: nothing to learn, nothing parsed
        brokers = json.loads(stats).get("brokers") or {}
        if any(b.get("state") == "UP" and b.get("source") != "internal" for b in brokers.values()):
            self.reachable()
            return
        # Still down: a statistics report may repeat the warning when no error callback comes (a
        # black-holed address fails a connection attempt only every socket.connection.setup.timeout.ms).
        with self._lock:
            fields = self._due_report(self._clock())
        if fields is not None:
            log.warning(UNREACHABLE_EVENT, **fields)

    def reachable(self) -> None:
        """A broker answered: ends an outage (``kafka.broker_reachable_again``) if one was reported."""
        now = self._clock()
        with self._lock:
            self._ever_reachable = True
            down_since, self._down_since = self._down_since, None
            self._reason = ""
        if down_since is not None:
            self.flush_suppressed()
            log.info(
                REACHABLE_AGAIN_EVENT,
                client=self.client,
                bootstrap_servers=self.bootstrap_servers,
                unreachable_for_s=round(now - down_since, 1),
            )

    @property
    def unreachable(self) -> bool:
        """True during a reported outage."""
        with self._lock:
            return self._down_since is not None


def with_client_logging(settings: dict[str, Any], client: str, *, polled: bool) -> dict[str, Any]:
    """Give the client built from ``settings`` eventapp's ``logger``, ``error_cb`` and (if ``polled``:
    eventapp polls it all the time) ``stats_cb`` with ``statistics.interval.ms`` (see the module
    docstring). ``settings`` must hold ``bootstrap.servers``; it is updated and returned."""
    if client_log_of(settings) is not None:
        return settings  # already done (settings passed twice)
    state = ClientLog(
        client,
        str(settings.get("bootstrap.servers", "")),
        user_error_cb=settings.get("error_cb"),
        user_stats_cb=settings.get("stats_cb"),
    )
    settings.setdefault("logger", state.logger)
    settings["error_cb"] = state.error_cb
    if polled or "stats_cb" in settings:
        settings["stats_cb"] = state.stats_cb
    if polled:
        settings.setdefault("statistics.interval.ms", STATS_INTERVAL_MS)
    return settings


def client_log_of(settings: Mapping[str, Any]) -> ClientLog | None:
    """The :class:`ClientLog` that :func:`with_client_logging` put in ``settings``, if any."""
    owner = getattr(settings.get("error_cb"), "__self__", None)
    return owner if isinstance(owner, ClientLog) else None


def mark_reachable(settings: Mapping[str, Any]) -> None:
    """A request of the client built from ``settings`` succeeded: a broker is reachable."""
    state = client_log_of(settings)
    if state is not None:
        state.reachable()
