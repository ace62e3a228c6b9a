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
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from eventapp._fs import write_atomically
from eventapp.clock import ManualClock
from eventapp.errors import EventAppError
from eventapp.functions import KeyedProcessFunction, OutputTag, TimeDomain
from eventapp.runtime.keyed_process import KeyedProcessOperator
from eventapp.runtime.operators import Operator, OperatorRuntime
from eventapp.runtime.record import StreamRecord
from eventapp.state.contents import read_state
from eventapp.state.descriptors import StateDescriptor
from eventapp.state.keys import encode_key
from eventapp.state.store import KeyedStateStore, StateBackend, default_state_backend

__all__ = ["KeyedProcessFunctionHarness"]

K = TypeVar("K")
IN = TypeVar("IN")
OUT = TypeVar("OUT")

_SPLIT = "harness-0"
#: The state schemas of a harness snapshot, beside the backend's files.
_SCHEMAS = "eventapp-schemas.json"


class _HarnessSplit:
    """The one split the harness runs (a :class:`~eventapp.runtime.record.SplitContext`)."""

    id = _SPLIT
    direct_writers = None
    checkpoint_id = 0

    def __init__(self, store: KeyedStateStore, schemas: dict[str, dict[str, Any]]) -> None:
        self.store = store
        self.schemas = schemas

    def write(self, sink: int, value: Any, timestamp: int | None) -> None:
        raise EventAppError("the harness has no sinks")

    def fire_timer(self, action: Callable[[], None], timestamp: int, timer_key: bytes) -> None:
        action()


class _Collect(Operator):
    """Collects what reaches it as ``(value, timestamp)``."""

    def __init__(self, name: str, records: list[tuple[Any, int | None]]) -> None:
        super().__init__(name)
        self.records = records

    def process(self, record: StreamRecord) -> None:
        self.records.append((record.value, record.timestamp))


class _SideOutputs(Mapping[OutputTag[Any], Operator]):
    """Collects every side output the function emits, whatever its tag."""

    def __init__(self) -> None:
        self.records: dict[OutputTag[Any], list[tuple[Any, int | None]]] = {}
        self._collectors: dict[OutputTag[Any], _Collect] = {}

    def get(self, tag: OutputTag[Any], default: Any = None) -> Operator:
        collector = self._collectors.get(tag)
        if collector is None:
            collector = self._collectors[tag] = _Collect(tag.name, self.records.setdefault(tag, []))
        return collector

    def __getitem__(self, tag: OutputTag[Any]) -> Operator:
        return self.get(tag)

    def __iter__(self) -> Iterator[OutputTag[Any]]:
        return iter(self._collectors)

    def __len__(self) -> int:
        return len(self._collectors)

    def clear(self) -> None:
        for records in self.records.values():
            records.clear()


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
        self._split = _HarnessSplit(self._store, _read_schemas(restore_from))
        self.output_records: list[tuple[OUT, int | None]] = []
        self._side = _SideOutputs()
        self._function = function
        self._operator = KeyedProcessOperator(
            name=uid, uid=uid, function=function, key_selector=key_selector, side_outputs=self._side
        )
        self._operator.output = _Collect("output", self.output_records)
        self._operator.open(OperatorRuntime("harness", self.clock, {_SPLIT: self._split}))

    # --- input and time ------------------------------------------------------------------------------
    def process_element(self, value: IN, timestamp: int | None = None) -> None:
        """Process one record (its event time is ``timestamp``)."""
        self._operator.process(StreamRecord(value, timestamp, self._split))

    def process_watermark(self, watermark: int) -> None:
        """Advance the watermark and fire every event-time timer at or before it."""
        self._operator.process_watermark(watermark)

    def set_processing_time(self, now_ms: int) -> None:
        """Move processing time to ``now_ms`` and fire every processing-time timer that is due."""
        self.clock.set(now_ms)
        self._operator.on_processing_time(now_ms)

    def advance_processing_time(self, delta_ms: int) -> None:
        self.set_processing_time(self.clock.now_ms() + delta_ms)

    @property
    def watermark(self) -> int:
        return self._operator.watermark

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
        self._side.clear()

    # --- state and timers ----------------------------------------------------------------------------
    def state(self, descriptor: StateDescriptor[Any], key: K) -> Any:
        """The value of ``descriptor``'s state for ``key``: a value, a list, a dict or a result."""
        ctx = self._operator.key_context
        ctx.enter(self._store, _SPLIT, key, encode_key(key), None)
        try:
            return read_state(self._operator.states.get(descriptor))
        finally:
            ctx.leave()

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
        write_atomically(directory / _SCHEMAS, json.dumps(self._split.schemas).encode())
        return directory

    def close(self) -> None:
        self._operator.close()
        self._store.close()

    def __enter__(self) -> KeyedProcessFunctionHarness[K, IN, OUT]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_schemas(restore_from: Path | None) -> dict[str, dict[str, Any]]:
    """The state schemas a harness snapshot recorded (checked as a job's restore checks them)."""
    if restore_from is None or not (Path(restore_from) / _SCHEMAS).is_file():
        return {}
    data: dict[str, dict[str, Any]] = json.loads((Path(restore_from) / _SCHEMAS).read_bytes())
    return data
