"""The stream builder: a job is a source followed by a tree of operators ending in sinks.

    job = Job("fraud-detection")
    (job.from_source(source, WatermarkStrategy.for_bounded_out_of_orderness(5_000))
        .map(parse)
        .key_by(lambda t: t.account)
        .process(FraudDetector(), uid="fraud-detector")
        .sink_to(alerts))
    job.run()

``key_by`` means what it means in Flink: state is per key across the whole job. When the input is
not already partitioned by the key, the records are shuffled through a repartition topic so that
each key's records reach one split (:mod:`eventapp.runtime.plan`, docs/keys-and-partitions.md);
``key_by(..., partitioned_by_source=True)`` skips the shuffle for inputs partitioned by that key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar, overload

from eventapp.assignment import Subtask
from eventapp.broadcast import (
    BroadcastConnectedStream,
    BroadcastStream,
    KeyedBroadcastProcessFunction,
    round_robin_key,
)
from eventapp.checkpoint.restore import RestoreRequest
from eventapp.config import JobConfig
from eventapp.connected import ConnectedStreams
from eventapp.errors import ConfigurationError
from eventapp.functions import CoProcessFunction, KeyedProcessFunction, OutputTag
from eventapp.graph import (
    CoProcessNode,
    FilterNode,
    FlatMapNode,
    KeyByNode,
    MapNode,
    Node,
    ProcessNode,
    SideOutputNode,
    SinkNode,
    SourceNode,
    UnionNode,
)
from eventapp.runtime.broadcast import (
    KeyedBroadcastAdapter,
    broadcast_key_selector,
    tag_broadcast_element,
    tag_element,
)
from eventapp.runtime.local import LocalRunner
from eventapp.runtime.plan import plan_job
from eventapp.runtime.stats import JobResult
from eventapp.sink import Sink
from eventapp.source import Source
from eventapp.state.descriptors import MapStateDescriptor
from eventapp.watermarks import WatermarkStrategy
from eventapp.windows.assigners import GlobalWindows, WindowAssigner
from eventapp.windows.evictors import CountEvictor
from eventapp.windows.triggers import CountTrigger, PurgingTrigger
from eventapp.windows.windowed_stream import WindowedStream

__all__ = ["DataStream", "Job", "KeyedStream", "ProcessedStream"]

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K")
B = TypeVar("B")

_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Job:
    """A named job: its sources, their operators and sinks, and a :class:`JobConfig`."""

    def __init__(self, name: str, config: JobConfig | None = None) -> None:
        if not isinstance(name, str) or not _JOB_NAME.match(name):
            raise ConfigurationError(
                f"job name {name!r} must start with a letter or digit and contain only letters, "
                f"digits, '.', '_' and '-' (it names checkpoint directories and transactional ids)"
            )
        self.name = name
        self.config = config if config is not None else JobConfig()
        self.source_nodes: list[SourceNode] = []
        self._names: set[str] = set()
        self._counter = 0
        self.sinks: list[SinkNode] = []

    def _name(self, kind: str, name: str | None, default: str | None = None) -> str:
        """A unique operator name: ``name`` if given (it must be unique), else ``default`` or
        ``kind``, numbered when taken."""
        if name is None:
            base = default or kind
            name = base
            while name in self._names:
                self._counter += 1
                name = f"{base}-{self._counter}"
        if name in self._names:
            raise ConfigurationError(
                f"operator name/uid {name!r} is used twice in job {self.name!r}; every operator "
                f"needs its own (state is mapped to operators by uid)"
            )
        self._names.add(name)
        return name

    @property
    def source_node(self) -> SourceNode | None:
        """The job's first source (``None`` before :meth:`from_source`)."""
        return self.source_nodes[0] if self.source_nodes else None

    def from_source(
        self,
        source: Source[T],
        watermark_strategy: WatermarkStrategy[T] | None = None,
        *,
        name: str | None = None,
    ) -> DataStream[T]:
        """A stream of ``source``'s records. A job may read several sources (each split of each
        source is its own split task); combine their streams with ``union`` or ``connect``."""
        if not isinstance(source, Source):
            raise ConfigurationError(f"from_source needs an eventapp Source, got {source!r}")
        node = SourceNode(
            name=self._name("source", name, source.name),
            source=source,
            watermarks=watermark_strategy or WatermarkStrategy.no_watermarks(),
        )
        self.source_nodes.append(node)
        return DataStream(self, node)

    def splits(self) -> list[str]:
        """Every split of the job: its sources', then each ``key_by`` shuffle's (planning the job
        creates a shuffle's repartition topic if missing, see :mod:`eventapp.runtime.plan`)."""
        return plan_job(self).all_splits()

    def runner(
        self,
        splits: Iterable[str] | None = None,
        restore: RestoreRequest | None = None,
        *,
        group: bool = False,
        group_instance_id: str | None = None,
        subtask: Subtask | None = None,
    ) -> LocalRunner:
        """A runner for this job in this process, over ``splits`` (default: all of the source's).

        ``restore`` overrides what splits restore from (``--from-checkpoint``/``--start-fresh``, see
        :mod:`eventapp.checkpoint.restore`); by default each restores its committed checkpoint.
        With ``group`` the source's consumer group assigns the splits as it goes
        (:mod:`eventapp.runtime.membership`); ``group_instance_id`` is static membership.
        ``subtask`` is this worker's place in the job: with a source that discovers new splits
        while running, it takes the new ones the subtask owns (:mod:`eventapp.runtime.discovery`).
        """
        return LocalRunner(
            self,
            splits=None if splits is None else list(splits),
            restore=restore,
            group=group,
            group_instance_id=group_instance_id,
            subtask=subtask,
        )

    def run(self, splits: Iterable[str] | None = None) -> JobResult:
        """Run the job in this process until its source is finished (forever if unbounded)."""
        runner = self.runner(splits)
        return runner.run()


class DataStream(Generic[T]):
    """A stream of records of type ``T``."""

    def __init__(self, job: Job, node: Node) -> None:
        self._job = job
        self._node = node

    def _add(self, node: Node) -> Node:
        self._node.children.append(node)
        return node

    def map(self, fn: Callable[[T], R], *, name: str | None = None) -> DataStream[R]:
        return DataStream(self._job, self._add(MapNode(name=self._job._name("map", name), fn=fn)))

    def filter(self, fn: Callable[[T], bool], *, name: str | None = None) -> DataStream[T]:
        return DataStream(self._job, self._add(FilterNode(name=self._job._name("filter", name), fn=fn)))

    def flat_map(self, fn: Callable[[T], Iterable[R]], *, name: str | None = None) -> DataStream[R]:
        node = FlatMapNode(name=self._job._name("flat_map", name), fn=fn)
        return DataStream(self._job, self._add(node))

    def union(self, *others: DataStream[T]) -> DataStream[T]:
        """The records of this stream and of ``others`` (streams of the same job), in the order
        they arrive (Flink's ``union``; a stream given twice gives its records twice)."""
        for other in others:
            if not isinstance(other, DataStream) or other._job is not self._job:
                raise ConfigurationError(
                    f"union() takes streams of the same job, got {other!r}: build both from this "
                    f"job's sources (job.from_source(...) once per source)"
                )
        node = UnionNode(name=self._job._name("union", None))
        for stream in (self, *others):
            stream._node.children.append(node)
        return DataStream(self._job, node)

    def co_process(
        self, function: CoProcessFunction[Any, Any, R], *, name: str | None = None
    ) -> DataStream[R]:
        """A stream of ``(1 | 2, value)`` records into a non-keyed co-process function (what
        ``connect(...).process(...)`` builds; use that)."""
        node = CoProcessNode(name=self._job._name("co_process", name), fn=function)
        return DataStream(self._job, self._add(node))

    @overload
    def connect(self, other: BroadcastStream[R]) -> BroadcastConnectedStream[Any, T, R]: ...

    @overload
    def connect(self, other: DataStream[R]) -> ConnectedStreams[T, R]: ...

    def connect(
        self, other: DataStream[R] | BroadcastStream[R]
    ) -> ConnectedStreams[T, R] | BroadcastConnectedStream[Any, T, R]:
        """This stream and ``other`` (of the same job) as the two inputs of one operator:
        ``.key_by(key_self, key_other).process(KeyedCoProcessFunction, uid=...)`` or
        ``.process(CoProcessFunction)``; with a broadcast stream,
        ``.process(BroadcastProcessFunction, uid=...)`` (``eventapp.broadcast``: the elements are
        spread over the shuffle's partitions round-robin, so that every one sees the broadcast)."""
        if isinstance(other, BroadcastStream):
            if other.stream._job is not self._job:
                raise ConfigurationError(f"connect() takes a broadcast stream of the same job, got {other!r}")
            keyed: KeyedStream[Any, T] = self.key_by(round_robin_key())
            return BroadcastConnectedStream(keyed, other, non_keyed=True)
        if not isinstance(other, DataStream) or other._job is not self._job:
            raise ConfigurationError(f"connect() takes a stream of the same job, got {other!r}")
        return ConnectedStreams(self, other)

    def broadcast(self, *descriptors: MapStateDescriptor[Any, Any]) -> BroadcastStream[T]:
        """This stream as a broadcast stream with broadcast state ``descriptors`` (Flink's
        ``broadcast``): connect a keyed stream to it (``eventapp.broadcast``)."""
        return BroadcastStream(self, tuple(descriptors))

    def key_by(
        self,
        key_selector: Callable[[T], K],
        *,
        partitioned_by_source: bool = False,
        partitions: int | None = None,
    ) -> KeyedStream[K, T]:
        """Group by ``key_selector(record)``: keyed state, timers and windows are per key, across
        the whole job (Flink's ``keyBy``).

        When the job's input has more than one split, the records are shuffled by key through a
        repartition topic ``<job>-<uid>-repartition`` (``partitions`` partitions; default: the
        largest split count of the inputs), written in each split's exactly-once transaction and
        read back as splits of their own (docs/keys-and-partitions.md). ``partitioned_by_source``
        skips the shuffle: only for inputs already partitioned by this key (a Kafka topic whose
        record key *is* the key, produced with the default partitioner); otherwise the records of a
        key in different partitions see different, partial state.
        """
        if not callable(key_selector):
            raise ConfigurationError("key_by needs a callable(record) -> key")
        if not isinstance(partitioned_by_source, bool):
            raise ConfigurationError(
                f"key_by(partitioned_by_source=...) takes a bool, got {partitioned_by_source!r}"
            )
        if partitions is not None and (
            not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1
        ):
            raise ConfigurationError(
                f"key_by(partitions={partitions!r}): the repartition topic's partition count must be "
                f"an int >= 1 (or None for the inputs' largest split count)"
            )
        if partitions is not None and partitioned_by_source:
            raise ConfigurationError(
                "key_by(partitions=...) sets the shuffle's partition count; with "
                "partitioned_by_source=True there is no shuffle: drop one of them"
            )
        node = KeyByNode(
            name=self._job._name("key_by", None),
            key_selector=key_selector,
            partitioned_by_source=partitioned_by_source,
            partitions=partitions,
        )
        self._node.children.append(node)
        return KeyedStream(self._job, node, key_selector, parent=self._node)

    def sink_to(self, sink: Sink[T], *, name: str | None = None) -> None:
        if not isinstance(sink, Sink):
            raise ConfigurationError(f"sink_to needs an eventapp Sink, got {sink!r}")
        node = SinkNode(name=self._job._name("sink", name, sink.name), sink=sink, index=len(self._job.sinks))
        self._job.sinks.append(node)
        self._add(node)


class KeyedStream(Generic[K, T]):
    """A stream grouped by key; ``process`` runs a keyed function on it."""

    def __init__(self, job: Job, node: Node, key_selector: Callable[[T], K], *, parent: Node) -> None:
        self._job = job
        self._node = node
        self._key_selector = key_selector
        self._parent = parent

    def connect(self, broadcast: BroadcastStream[B]) -> BroadcastConnectedStream[K, T, B]:
        """This keyed stream and a broadcast stream (``stream.broadcast(descriptor, ...)``) into one
        :class:`~eventapp.broadcast.KeyedBroadcastProcessFunction` (``eventapp.broadcast``)."""
        if not isinstance(broadcast, BroadcastStream) or broadcast.stream._job is not self._job:
            raise ConfigurationError(
                f"KeyedStream.connect() takes a broadcast stream of the same job "
                f"(stream.broadcast(MapStateDescriptor(...))), got {broadcast!r}"
            )
        return BroadcastConnectedStream(self, broadcast)

    def broadcast_process(
        self, function: KeyedBroadcastProcessFunction[K, T, B, R], broadcast: BroadcastStream[B], *, uid: str
    ) -> ProcessedStream[R]:
        """What ``connect(broadcast).process(function, uid=...)`` builds (see eventapp.broadcast):
        the tagged union of both, keyed by the element's key or the broadcast key."""
        key_by = self._node
        assert isinstance(key_by, KeyByNode)
        if key_by.partitioned_by_source:
            raise ConfigurationError(
                f"process(uid={uid!r}) with broadcast state needs the shuffle, which sends every "
                f"broadcast element to every split: drop partitioned_by_source=True from key_by"
            )
        if not key_by.children and key_by in self._parent.children:
            self._parent.children.remove(key_by)  # replaced by the union's key_by below
        events: DataStream[tuple[str, Any]] = DataStream(self._job, self._parent).map(tag_element)
        updates: DataStream[tuple[str, Any]] = broadcast.stream.map(tag_broadcast_element)
        keyed = events.union(updates).key_by(
            broadcast_key_selector(self._key_selector), partitions=key_by.partitions
        )
        adapter = KeyedBroadcastAdapter(function, broadcast.descriptors)
        stream = keyed.process(adapter, uid=uid)
        node = stream._node
        assert isinstance(node, ProcessNode)
        node.broadcast = broadcast.descriptors
        return stream

    def process(self, function: KeyedProcessFunction[K, T, R], *, uid: str) -> ProcessedStream[R]:
        """Run ``function`` per key. ``uid`` names the operator's state: keep it stable across
        versions of the job, or its state cannot be restored from checkpoints and savepoints."""
        if not isinstance(function, KeyedProcessFunction):
            raise ConfigurationError(f"process() needs a KeyedProcessFunction instance, got {function!r}")
        if not isinstance(uid, str) or not _JOB_NAME.match(uid):
            raise ConfigurationError(
                f"process(uid={uid!r}): the uid must start with a letter or digit and contain only "
                f"letters, digits, '.', '_' and '-'"
            )
        node = ProcessNode(
            name=self._job._name("process", uid), uid=uid, fn=function, key_selector=self._key_selector
        )
        self._node.children.append(node)
        return ProcessedStream(self._job, node)

    def window(self, assigner: WindowAssigner) -> WindowedStream[K, T]:
        """Windows of this keyed stream (``eventapp.windows``; Flink's ``window``)."""
        return WindowedStream(self, assigner)

    def count_window(self, size: int, slide: int | None = None) -> WindowedStream[K, T]:
        """Windows of ``size`` records per key, every ``slide`` records (Flink's ``countWindow``:
        tumbling when ``slide`` is None)."""
        windows = WindowedStream(self, GlobalWindows())
        if slide is None:
            return windows.trigger(PurgingTrigger(CountTrigger(size)))
        return windows.evictor(CountEvictor(size)).trigger(CountTrigger(slide))


class ProcessedStream(DataStream[T]):
    """The main output of a keyed process function; ``side_output(tag)`` gives a side output."""

    def side_output(self, tag: OutputTag[R]) -> DataStream[R]:
        assert isinstance(self._node, ProcessNode)
        node = self._node.side_outputs.get(tag)
        if node is None:
            node = SideOutputNode(name=f"{self._node.name}[{tag.name}]")
            self._node.side_outputs[tag] = node
        return DataStream(self._job, node)
