"""Split discovery: a running job picks up the splits its source gains (new Redis streams matching
a pattern), as Flink's sources do with ``partition.discovery.interval.ms``.

Every ``discovery_interval_ms`` of processing time the runner asks the
:class:`~eventapp.source.DiscoveringSource` for its splits (in the worker's thread, between two
steps: no record is half processed). The new ones this worker owns are opened like the splits a
consumer group assigns (:meth:`~eventapp.runtime.local.LocalRunner.start_splits`): restored from
their committed checkpoint if they have one, else read from their earliest record. Which worker
owns a split is :func:`~eventapp.assignment.owner_of` it, which depends on the split alone, so every
worker decides the same without talking to the others and no running split ever moves.

Discovery only adds splits. A failure to list them fails the step (and the job, whose restart
strategy decides what follows), as Flink's enumerator fails the job when discovery fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from eventapp.assignment import Subtask
from eventapp.errors import ConfigurationError
from eventapp.source import DiscoveringSource, discovers_splits

if TYPE_CHECKING:
    from eventapp.runtime.inputs import TaskInput
    from eventapp.runtime.plan import JobPlan

__all__ = ["SplitDiscovery", "plan_discovery"]

log = structlog.get_logger("eventapp.runtime")


class SplitDiscovery:
    """Finds the new splits of one input's source that this worker owns (see the module docstring)."""

    def __init__(
        self, source: DiscoveringSource, owns: Callable[[str], bool], interval_ms: int, now_ms: int
    ) -> None:
        self._source = source
        self._owns = owns
        self._interval_ms = interval_ms
        self._next_ms = now_ms + interval_ms
        #: Discovery rounds so far (for tests and metrics).
        self.rounds = 0

    def new_splits(self, put: TaskInput, now_ms: int) -> list[str]:
        """Once the interval passed: the splits the source has now that this worker owns and does
        not run yet (as input ``put``)."""
        if put.finished or now_ms < self._next_ms:
            return []
        known = put.splits
        self._next_ms = now_ms + self._interval_ms
        self.rounds += 1
        found = [s for s in self._source.discover_splits() if s not in known and self._owns(s)]
        if found:
            log.info("source.splits_discovered", splits=found, round=self.rounds)
        return found


def plan_discovery(
    inputs: Sequence[TaskInput],
    plan: JobPlan,
    subtask: Subtask | None,
    *,
    explicit: bool,
    now_ms: int,
    job: str,
    log: Any,
) -> dict[int, SplitDiscovery]:
    """Per input index, the discovery of the inputs whose sources discover new splits, and how this
    worker tells its own: by ``subtask`` (``eventapp run --subtask``), or all of them when it runs
    every split. A worker given an ``explicit`` split list (and no subtask) does not discover."""
    found: dict[int, SplitDiscovery] = {}
    for index, put in enumerate(inputs):
        source = put.source
        if not discovers_splits(source) or put.shuffle is not None:
            continue
        assert isinstance(source, DiscoveringSource) and source.discovery_interval_ms is not None
        if plan.shuffles:
            raise ConfigurationError(
                f"source {source.name!r} discovers new splits while the job runs, but job {job!r} "
                f"repartitions its records (a key_by shuffle), whose readers must know every "
                f"writing split in advance: declare key_by(..., partitioned_by_source=True) if the "
                f"splits are partitioned by the key, or turn discovery off"
            )
        if subtask is not None:
            owns = subtask.owns
        elif not explicit:
            owns = _every_split
        else:
            log.info("source.discovery_off", source=source.name, reason="explicit splits, no subtask")
            continue
        found[index] = SplitDiscovery(source, owns, source.discovery_interval_ms, now_ms)
    return found


def _every_split(split: str) -> bool:
    return True
