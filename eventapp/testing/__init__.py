"""Test a :class:`~eventapp.KeyedProcessFunction` without a job: Flink's operator test harness.

    harness = KeyedProcessFunctionHarness(FraudDetector(), key_selector=lambda t: t["account"])
    harness.process_element({"account": "a", "amount": 0.5}, timestamp=1_000)
    harness.process_element({"account": "a", "amount": 900.0}, timestamp=2_000)
    assert harness.outputs == [Alert("a")]
    harness.set_processing_time(120_000)      # fires due processing-time timers
    harness.process_watermark(10_000)         # fires due event-time timers

The harness runs the real operator on a real state backend (memory by default), so state, TTL,
timers and side outputs behave exactly as in a job.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from eventapp.clock import ManualClock
from eventapp.functions import KeyedProcessFunction, OutputTag, TimeDomain
from eventapp.runtime.keyed_process import Emit, KeyedProcessOperator
from eventapp.state.descriptors import StateDescriptor
from eventapp.state.handles import read_state
from eventapp.state.keys import encode_key
from eventapp.state.scope import ExecutionScope
from eventapp.state.store import KeyedStateStore, StateBackend, default_state_backend

__all__ = ["KeyedProcessFunctionHarness"]

K = TypeVar("K")
IN = TypeVar("IN")
OUT = TypeVar("OUT")

_SPLIT = "harness-0"


class _SideOutputs(Mapping[OutputTag[Any], Emit]):
    """Collects every side output the function emits, whatever its tag."""

    def __init__(self) -> None:
        self.records: dict[OutputTag[Any], list[tuple[Any, int | None]]] = {}

    def get(self, tag: OutputTag[Any], default: Any = None) -> Emit:
        records = self.records.setdefault(tag, [])
        return lambda value, ts: records.append((value, ts))

    def __getitem__(self, tag: OutputTag[Any]) -> Emit:
        return self.get(tag)

    def __iter__(self) -> Iterator[OutputTag[Any]]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)


class KeyedProcessFunctionHarness(Generic[K, IN, OUT]):
    """Drives one KeyedProcessFunction: push elements, move time, read outputs and state."""

    def __init__(
        self,
        function: KeyedProcessFunction[K, IN, OUT],
        key_selector: Callable[[IN], K],
        *,
        uid: str = "harness",
        state_backend: StateBackend | None = None,
        processing_time: int = 0,
        restore_from: Path | None = None,
    ) -> None:
        if state_backend is None:
            state_backend = default_state_backend()
        self.clock = ManualClock(processing_time)
        self._backend = state_backend
        self._store: KeyedStateStore = state_backend.open(_SPLIT, restore_from=restore_from)
        self._execution = ExecutionScope(self.clock)
        self.output_records: list[tuple[OUT, int | None]] = []
        self._side = _SideOutputs()
        self._function = function
        self._operator = KeyedProcessOperator(
            job_name="harness",
            uid=uid,
            function=function,
            key_selector=key_selector,
            execution=self._execution,
            emit=lambda value, ts: self.output_records.append((value, ts)),
            side_outputs=self._side,
        )
        self._bind()
        self._operator.open()

    def _bind(self) -> None:
        ex = self._execution
        ex.store = self._store
        ex.split = _SPLIT
        ex.position = None

    # --- input and time ------------------------------------------------------------------------------
    def process_element(self, value: IN, timestamp: int | None = None) -> None:
        """Process one record (its event time is ``timestamp``)."""
        self._bind()
        self._operator.process(value, timestamp)

    def process_watermark(self, watermark: int) -> None:
        """Advance the watermark and fire every event-time timer at or before it."""
        if watermark > self._execution.watermark:
            self._execution.watermark = watermark
        self._operator.fire_timers(TimeDomain.EVENT_TIME, watermark, {_SPLIT: self._store})

    def set_processing_time(self, now_ms: int) -> None:
        """Move processing time to ``now_ms`` and fire every processing-time timer that is due."""
        self.clock.set(now_ms)
        self._operator.fire_timers(TimeDomain.PROCESSING_TIME, now_ms, {_SPLIT: self._store})

    def advance_processing_time(self, delta_ms: int) -> None:
        self.set_processing_time(self.clock.now_ms() + delta_ms)

    @property
    def watermark(self) -> int:
        return self._execution.watermark

    # --- outputs -------------------------------------------------------------------------------------
    @property
    def outputs(self) -> list[OUT]:
        """Main-output values, in emission order."""
        return [v for v, _ in self.output_records]

    def side_output(self, tag: OutputTag[Any]) -> list[Any]:
        return [v for v, _ in self._side.records.get(tag, [])]

    def side_output_records(self, tag: OutputTag[Any]) -> list[tuple[Any, int | None]]:
        return list(self._side.records.get(tag, []))

    def clear_outputs(self) -> None:
        self.output_records.clear()
        self._side.records.clear()

    # --- state and timers ----------------------------------------------------------------------------
    def state(self, descriptor: StateDescriptor[Any], key: K) -> Any:
        """The value of ``descriptor``'s state for ``key``: a value, a list, a dict or a result."""
        self._bind()
        self._operator.set_key(key, encode_key(key))
        saved = self._execution.timestamp
        self._execution.timestamp = None
        try:
            handle = self._operator.states.get(descriptor)
            return read_state(handle)
        finally:
            self._execution.timestamp = saved

    def num_event_time_timers(self) -> int:
        return self._operator.timers.count(TimeDomain.EVENT_TIME, self._store)

    def num_processing_time_timers(self) -> int:
        return self._operator.timers.count(TimeDomain.PROCESSING_TIME, self._store)

    # --- snapshots -----------------------------------------------------------------------------------
    def snapshot(self) -> Path:
        """Snapshot the state and timers; pass the path to a new harness as ``restore_from``.
        The snapshot outlives this harness (it is removed when the interpreter exits). The
        watermark is not part of it: a restored harness starts at the minimum watermark."""
        directory = Path(tempfile.mkdtemp(prefix="eventapp-harness-"))
        atexit.register(shutil.rmtree, directory, True)
        self._store.snapshot(directory)
        return directory

    def close(self) -> None:
        self._operator.close()
        self._store.close()

    def __enter__(self) -> KeyedProcessFunctionHarness[K, IN, OUT]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
