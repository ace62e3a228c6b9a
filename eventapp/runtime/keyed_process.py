"""The keyed process operator: runs a KeyedProcessFunction with its state, timers and outputs.

One operator instance serves every split of a task. It is the one place that sets its
:class:`~eventapp.state.context.KeyContext`: from the record (its split's store, its key, its
timestamp) before ``process_element``, and from the timer before ``on_timer``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from eventapp.clock import SystemClock
from eventapp.errors import ConfigurationError, EventAppError, RecordProcessingError, StateSchemaError
from eventapp.functions import KeyedProcessFunction, OnTimerContext, OutputTag, RuntimeContext, TimeDomain
from eventapp.runtime.faults import FAULTS_PLANNED, fault_point
from eventapp.runtime.operators import Operator, OperatorRuntime
from eventapp.runtime.record import SplitContext, StreamRecord
from eventapp.runtime.timers import Timers, TimerServiceImpl
from eventapp.state.context import KeyContext
from eventapp.state.descriptors import StateDescriptor
from eventapp.state.keys import KeyEncoder, decode_key
from eventapp.state.migration import reconcile_state
from eventapp.state.registry import StateRegistry, declared_descriptors
from eventapp.state.store import KeyedStateStore

__all__ = ["KeyedProcessOperator"]


class _ContextImpl(OnTimerContext, RuntimeContext):
    """One object serves as runtime, element and timer context (they differ only in what is valid)."""

    __slots__ = ("_op", "domain")

    def __init__(self, op: KeyedProcessOperator) -> None:
        self._op = op
        self.domain: TimeDomain | None = None

    def get_state(self, descriptor: Any) -> Any:
        return self._op.states.get(descriptor)

    @property
    def job_name(self) -> str:
        return self._op.job_name

    @property
    def operator_uid(self) -> str:
        return self._op.uid

    @property
    def timestamp(self) -> int | None:
        return self._op.current_timestamp

    @property
    def current_key(self) -> Any:
        return self._op.key_context.key

    @property
    def timer_service(self) -> TimerServiceImpl:
        return self._op.timer_service

    def output(self, tag: OutputTag[Any], value: Any) -> None:
        self._op.emit_side(tag, value)

    def set_output_timestamp(self, timestamp: int | None) -> int | None:
        """The timestamp outputs carry from now on; returns the one they carried. For functions of
        eventapp itself (a window's result carries ``window.max_timestamp()``), not the user API."""
        op = self._op
        previous, op.out_timestamp = op.out_timestamp, timestamp
        return previous

    @property
    def time_domain(self) -> TimeDomain:
        if self.domain is None:
            raise EventAppError("time_domain is only defined in on_timer()")
        return self.domain


class _Collector:
    """The function's main output: emits a reused record carrying the current split, position and
    output timestamp (Flink's ``TimestampedCollector``)."""

    __slots__ = ("_op",)

    def __init__(self, op: KeyedProcessOperator) -> None:
        self._op = op

    def collect(self, value: Any) -> None:
        op = self._op
        record = op.out_record
        record.value = value
        record.timestamp = op.out_timestamp
        op.output.process(record)


class _NoSplit:
    """The split of outputs emitted outside of ``process_element``/``on_timer`` (an error)."""

    id = "<none>"
    direct_writers = None
    checkpoint_id = 0

    @property
    def schemas(self) -> dict[str, dict[str, Any]]:
        return {}

    @property
    def store(self) -> KeyedStateStore:
        raise self._outside()

    def write(self, sink: int, value: Any, timestamp: int | None) -> None:
        raise self._outside()

    def fire_timer(self, action: Callable[[], None], timestamp: int, timer_key: bytes) -> None:
        raise self._outside()

    @staticmethod
    def _outside() -> EventAppError:
        return EventAppError("outputs can only be emitted in process_element() or on_timer()")


class KeyedProcessOperator(Operator):
    """Runs one :class:`KeyedProcessFunction` for every split of a task."""

    def __init__(
        self,
        *,
        name: str,
        uid: str,
        function: KeyedProcessFunction[Any, Any, Any],
        key_selector: Callable[[Any], Any],
        side_outputs: Mapping[OutputTag[Any], Operator] | None = None,
    ) -> None:
        super().__init__(name)
        self.uid = uid
        self.job_name = ""
        self.function = function
        self.key_selector = key_selector
        self.side_outputs: Mapping[OutputTag[Any], Operator] = {} if side_outputs is None else side_outputs
        self.splits: Mapping[str, SplitContext] = {}
        self.key_context = KeyContext(SystemClock())
        self.states = StateRegistry(uid, self.key_context, self._reconcile)
        self.timers = Timers(uid, self.key_context)
        self.timer_service = TimerServiceImpl(self.timers, self.key_context)
        #: What ``ctx.timestamp`` says, and the timestamp outputs carry.
        self.current_timestamp: int | None = None
        self.out_timestamp: int | None = None
        self.out_record = StreamRecord(None, None, _NoSplit())
        self._side_records: dict[OutputTag[Any], StreamRecord] = {}
        self._ctx = _ContextImpl(self)
        self._out = _Collector(self)
        self._cleanup_cursor: dict[tuple[str, str], bytes] = {}
        self._keys = KeyEncoder()
        #: States checked at open because the function declares them (see open()).
        self._declared: dict[str, StateDescriptor[Any]] = {}

    # --- lifecycle ---------------------------------------------------------------------------------
    def bind(self, runtime: OperatorRuntime) -> None:
        """Attach the operator to a task's clock and splits; :meth:`open` does this and then calls
        the function's ``open``."""
        self.job_name = runtime.job
        self.splits = runtime.splits
        self.key_context.clock = runtime.clock

    def open(self, runtime: OperatorRuntime) -> None:
        self.bind(runtime)
        try:
            self.function.open(self._ctx)
        except EventAppError:
            raise
        except Exception as exc:
            raise RecordProcessingError(
                operator=self.uid, key=None, record="<open>", split=None, position=None, cause=exc
            ) from exc
        # States the function declares as attributes are checked now, before any record, even if
        # it registers them lazily (a state first registered in process_element is checked then).
        for descriptor in declared_descriptors(self.function):
            if not self.states.registered(descriptor.name):
                self._reconcile(descriptor)
                self._declared[descriptor.name] = descriptor

    def _reconcile(self, descriptor: StateDescriptor[Any]) -> None:
        declared = self._declared.get(descriptor.name)
        if declared is not None:
            if declared != descriptor:
                raise ConfigurationError(
                    f"operator '{self.uid}' declares state {descriptor.name!r} as {declared!r} and "
                    f"registers it as {descriptor!r}; give each state its own name"
                )
            return  # checked when the operator opened
        reconcile_state(self.uid, descriptor, self.splits)

    def close(self) -> None:
        self.function.close()

    # --- records -----------------------------------------------------------------------------------
    def process(self, record: StreamRecord) -> None:
        # The hot path: KeyContext.leave()/enter() inlined.
        ctx = self.key_context
        ctx.key = ctx.key_bytes = ctx.key_part = None
        split = record.split
        try:
            value = record.value
            key = self.key_selector(value)
            key_bytes, part = self._keys.encode(key)
            timestamp = record.timestamp
            ctx.store = split.store
            ctx.split = split.id
            ctx.key, ctx.key_bytes, ctx.key_part, ctx.timestamp = key, key_bytes, part, timestamp
            self.current_timestamp = self.out_timestamp = timestamp
            out = self.out_record
            out.split = split
            out.position = record.position
            if self._side_records:
                self._bind_outputs(split, record.position)
            self._ctx.domain = None
            self.function.process_element(value, self._ctx, self._out)
        except (RecordProcessingError, StateSchemaError):
            raise
        except Exception as exc:
            raise record.failure(self.uid, exc, ctx.key) from exc

    def _bind_outputs(self, split: SplitContext, position: int | None) -> None:
        out = self.out_record
        out.split = split
        out.position = position
        for side in self._side_records.values():
            side.split = split
            side.position = position

    def emit_side(self, tag: OutputTag[Any], value: Any) -> None:
        target = self.side_outputs.get(tag)
        if target is None:
            return
        record = self._side_records.get(tag)
        if record is None:
            out = self.out_record
            record = self._side_records[tag] = StreamRecord(None, None, out.split, out.position)
        record.value = value
        record.timestamp = self.out_timestamp
        target.process(record)

    # --- watermarks and timers ---------------------------------------------------------------------
    def process_watermark(self, watermark: int) -> int:
        if watermark <= self.watermark:
            return 0
        # Timers first, then the watermark moves on: their outputs reach downstream operators
        # before the watermark that fired them.
        fired = self.fire_timers(TimeDomain.EVENT_TIME, watermark)
        self.watermark = watermark
        self.key_context.watermark = watermark
        for side in self.side_outputs.values():
            fired += side.process_watermark(watermark)
        return fired + self.output.process_watermark(watermark)

    def on_processing_time(self, now_ms: int) -> int:
        return self.fire_timers(TimeDomain.PROCESSING_TIME, now_ms)

    def fire_timers(self, domain: TimeDomain, limit: int) -> int:
        """Fire every timer of ``domain`` with timestamp ``<= limit``, split by split, in timestamp
        order. Each firing runs under its split's error policy."""
        fired = 0
        if domain is TimeDomain.EVENT_TIME:
            # While event-time timers fire, the operator's watermark is the one that made them due
            # (as in Flink, where the time service advances before onEventTime is called).
            self.key_context.watermark = limit
        for split in self.splits.values():
            store = split.store
            while True:
                due = self.timers.pop_due(domain, split.id, store, limit)
                if due is None:
                    break
                ts, kb = due
                fired += 1
                split.fire_timer(
                    functools.partial(self._fire_one, split, domain, ts, kb),
                    ts,
                    self.timers.key(domain, ts, kb),
                )
                if FAULTS_PLANNED:
                    fault_point("timer.after_fire")
        return fired

    def _fire_one(self, split: SplitContext, domain: TimeDomain, ts: int, kb: bytes) -> None:
        key = decode_key(kb)
        event_time = domain is TimeDomain.EVENT_TIME
        self.key_context.enter(split.store, split.id, key, kb, ts if event_time else None)
        self.current_timestamp = ts
        self.out_timestamp = ts if event_time else None
        self._bind_outputs(split, None)
        self._ctx.domain = domain
        try:
            self.function.on_timer(ts, self._ctx, self._out)
        except (RecordProcessingError, StateSchemaError):
            raise
        except Exception as exc:
            raise RecordProcessingError(
                operator=self.uid,
                key=key,
                record=f"<{domain.value} timer @ {ts}>",
                split=split.id,
                position=None,
                cause=exc,
            ) from exc
        finally:
            self._ctx.domain = None

    def split_added(self, split: SplitContext) -> None:
        """A split joined the running task (a consumer group assigned it): check its restored state
        schemas against the states declared and registered so far, as open() did for the others."""
        self.forget_split(split.id)
        descriptors = {d.name: d for d in self._declared.values()}
        descriptors.update((d.name, d) for d in self.states.descriptors())
        for descriptor in descriptors.values():
            reconcile_state(self.uid, descriptor, {split.id: split})

    def forget_split(self, split: str) -> None:
        self.timers.forget(split)
        for k in [k for k in self._cleanup_cursor if k[0] == split]:
            del self._cleanup_cursor[k]

    # --- TTL cleanup -------------------------------------------------------------------------------
    def cleanup_expired_state(self, split: SplitContext) -> int:
        """Visit up to ``cleanup_batch`` entries of each TTL state of ``split`` and drop the expired.
        Returns the number of entries visited."""
        visited = 0
        ctx = self.key_context
        store = split.store
        for state in self.states.ttl_states():
            ttl = state.descriptor.ttl
            assert ttl is not None
            if ttl.cleanup_batch == 0:
                continue
            cursor_key = (split.id, state.descriptor.name)
            start = self._cleanup_cursor.get(cursor_key)
            batch: list[tuple[bytes, bytes]] = []
            for item in store.scan(state.prefix, start):
                batch.append(item)
                if len(batch) > ttl.cleanup_batch:
                    break
            if len(batch) > ttl.cleanup_batch:
                self._cleanup_cursor[cursor_key] = batch.pop()[0]
            else:
                self._cleanup_cursor.pop(cursor_key, None)
            ctx.store, ctx.split, ctx.timestamp = store, split.id, None
            for entry, data in batch:
                state.cleanup_expired(store, entry, data)
            visited += len(batch)
        return visited
