"""The job graph: what the stream builder (:mod:`eventapp.stream`) records and the runtime builds
operators from (:mod:`eventapp.runtime.chain`). Plain data, no behaviour."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from eventapp.functions import CoProcessFunction, KeyedProcessFunction, OutputTag
from eventapp.sink import Sink
from eventapp.source import Source
from eventapp.state.descriptors import MapStateDescriptor
from eventapp.watermarks import WatermarkStrategy

__all__ = [
    "CoProcessNode",
    "FilterNode",
    "FlatMapNode",
    "KeyByNode",
    "MapNode",
    "Node",
    "ProcessNode",
    "SideOutputNode",
    "SinkNode",
    "SourceNode",
    "UnionNode",
]


@dataclass(eq=False, kw_only=True)
class Node:
    name: str
    children: list[Node] = field(default_factory=list)


@dataclass(eq=False, kw_only=True)
class SourceNode(Node):
    source: Source[Any]
    watermarks: WatermarkStrategy[Any] = field(default_factory=WatermarkStrategy.no_watermarks)


@dataclass(eq=False, kw_only=True)
class MapNode(Node):
    fn: Callable[[Any], Any]


@dataclass(eq=False, kw_only=True)
class FilterNode(Node):
    fn: Callable[[Any], bool]


@dataclass(eq=False, kw_only=True)
class FlatMapNode(Node):
    fn: Callable[[Any], Iterable[Any]]


@dataclass(eq=False, kw_only=True)
class KeyByNode(Node):
    """``key_by``: its children (keyed operators) see the records grouped by ``key_selector``.
    Unless ``partitioned_by_source``, the records are shuffled so that every record of a key reaches
    the same split (:mod:`eventapp.runtime.plan`); ``partitions`` is the shuffle's partition count."""

    key_selector: Callable[[Any], Any]
    partitioned_by_source: bool = False
    partitions: int | None = None


@dataclass(eq=False, kw_only=True)
class ProcessNode(Node):
    uid: str
    fn: KeyedProcessFunction[Any, Any, Any]
    key_selector: Callable[[Any], Any]
    side_outputs: dict[OutputTag[Any], SideOutputNode] = field(default_factory=dict)
    #: The broadcast state's maps, when the function is a keyed broadcast function's adapter.
    broadcast: tuple[MapStateDescriptor[Any, Any], ...] = ()


@dataclass(eq=False, kw_only=True)
class CoProcessNode(Node):
    """A non-keyed ``CoProcessFunction`` over the tagged union of two streams."""

    fn: CoProcessFunction[Any, Any, Any]


@dataclass(eq=False, kw_only=True)
class SideOutputNode(Node):
    """The stream of one side output of a process node (its children read it)."""


@dataclass(eq=False, kw_only=True)
class UnionNode(Node):
    """The records of several streams of the job, as they arrive (Flink's ``union``); every one
    of those streams has it as a child."""


@dataclass(eq=False, kw_only=True)
class SinkNode(Node):
    sink: Sink[Any]
    index: int
