"""The job plan: which inputs a job's tasks read and which ``key_by`` nodes shuffle.

A job's *inputs* are its sources and, for every shuffled ``key_by``, the shuffle's partitions
(read back as splits of their own; :mod:`eventapp.runtime.shuffle`). A ``key_by`` shuffles unless

- it was declared ``partitioned_by_source=True`` (the input is partitioned by that key), or
- nothing keyed follows it, or
- every source upstream of it together has a single split, none discovers more while running
  (:class:`~eventapp.source.DiscoveringSource`), and no ``partitions`` were asked for (all of a
  key's records are in that split already).

The shuffle's channel comes from a source upstream of it that is a
:class:`~eventapp.shuffle.ShuffleTransport` (the Kafka source: a topic
``<job>-<uid>-repartition`` on its cluster, ``uid`` of the first keyed operator after the
``key_by``), with ``partitions`` partitions (default: the largest split count of the sources
upstream). The children of a shuffled ``key_by`` are fed by the shuffle's input, not by the
``key_by``'s parent; the graph itself is not changed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventapp.config import CheckpointingMode
from eventapp.errors import ConfigurationError
from eventapp.graph import KeyByNode, Node, ProcessNode, SourceNode
from eventapp.shuffle import ShuffleChannel, ShuffleTransport
from eventapp.sink import Sink
from eventapp.source import discovers_splits
from eventapp.watermarks import WatermarkStrategy

if TYPE_CHECKING:
    from eventapp.stream import Job

__all__ = ["JobPlan", "Shuffle", "children_of", "plan_job"]


@dataclass(eq=False)
class Shuffle:
    """A shuffled ``key_by``: where it writes and which input reads it back."""

    node: KeyByNode
    topic: str
    partitions: int
    channel: ShuffleChannel
    #: Index of the channel's sink among the plan's sinks (what each split's writers are made of).
    sink_index: int
    #: The input that reads the shuffle (its children are the key_by's).
    input: SourceNode
    #: The splits that write into the shuffle (each sends watermark markers to every partition).
    upstream_splits: set[str] = field(default_factory=set)


@dataclass(frozen=True, eq=False)
class JobPlan:
    """A job's inputs (its sources first, then one per shuffle), the sinks every split has a writer
    for (the job's, then one per shuffle), and the shuffles by ``key_by`` node."""

    inputs: tuple[SourceNode, ...]
    sinks: tuple[Sink[Any], ...]
    shuffles: tuple[Shuffle, ...]
    #: Split ids per input (``inputs[i]`` has ``splits[i]``).
    splits: tuple[tuple[str, ...], ...]

    def shuffle_of(self, node: Node) -> Shuffle | None:
        for shuffle in self.shuffles:
            if shuffle.node is node:
                return shuffle
        return None

    def shuffle_reading(self, source: SourceNode) -> Shuffle | None:
        for shuffle in self.shuffles:
            if shuffle.input is source:
                return shuffle
        return None

    def all_splits(self) -> list[str]:
        return [split for splits in self.splits for split in splits]

    def input_of(self, split: str) -> int:
        for index, splits in enumerate(self.splits):
            if split in splits:
                return index
        raise KeyError(split)


def children_of(node: Node) -> Iterator[Node]:
    """The nodes ``node`` emits to (a process node's side outputs too)."""
    yield from node.children
    if isinstance(node, ProcessNode):
        yield from node.side_outputs.values()


def plan_job(job: Job) -> JobPlan:
    """Plan ``job`` (creates each shuffle's topic if missing, see the module docstring)."""
    sources = list(job.source_nodes)
    if not sources:
        raise ConfigurationError(f"job {job.name!r} has no source; call job.from_source(...) first")
    source_splits = [tuple(node.source.splits()) for node in sources]
    upstream = _upstream_sources(sources)
    checkpoint = job.config.checkpoint
    exactly_once = checkpoint is not None and checkpoint.mode is CheckpointingMode.EXACTLY_ONCE
    inputs: list[SourceNode] = list(sources)
    splits: list[tuple[str, ...]] = list(source_splits)
    sinks: list[Sink[Any]] = [node.sink for node in job.sinks]
    shuffles: list[Shuffle] = []
    index = 0
    while index < len(inputs):  # shuffles found add inputs, which are walked in turn
        feeding = splits[index]
        seen: set[int] = set()
        stack: list[Node] = [inputs[index]]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, KeyByNode):
                shuffle = next((s for s in shuffles if s.node is node), None)
                above = sorted(upstream[id(node)])
                counts = [len(source_splits[i]) for i in above]
                growing = any(discovers_splits(sources[i].source) for i in above)
                if shuffle is None and _shuffles(node, counts, growing):
                    shuffle = _new_shuffle(
                        job, node, [sources[i] for i in above], counts, exactly_once, len(sinks)
                    )
                    shuffles.append(shuffle)
                    sinks.append(shuffle.channel.sink)
                    inputs.append(shuffle.input)
                    splits.append(tuple(shuffle.channel.source.splits()))
                if shuffle is not None:
                    shuffle.upstream_splits.update(feeding)
                    continue
            stack.extend(children_of(node))
        index += 1
    _check_unique_splits(inputs, splits)
    return JobPlan(tuple(inputs), tuple(sinks), tuple(shuffles), tuple(splits))


def _upstream_sources(sources: Sequence[SourceNode]) -> dict[int, set[int]]:
    """For every node: the indexes of the sources it is reachable from (ignoring shuffles)."""
    found: dict[int, set[int]] = {}
    for index, source in enumerate(sources):
        stack: list[Node] = [source]
        while stack:
            node = stack.pop()
            reached = found.setdefault(id(node), set())
            if index in reached:
                continue
            reached.add(index)
            stack.extend(children_of(node))
    return found


def _shuffles(node: KeyByNode, upstream_split_counts: Sequence[int], growing: bool) -> bool:
    """``growing``: a source upstream discovers splits while running (one split now says nothing)."""
    if node.partitioned_by_source or not any(isinstance(c, ProcessNode) for c in node.children):
        return False
    return node.partitions is not None or growing or sum(upstream_split_counts) > 1


def _new_shuffle(
    job: Job,
    node: KeyByNode,
    upstream: Sequence[SourceNode],
    upstream_split_counts: Sequence[int],
    exactly_once: bool,
    sink_index: int,
) -> Shuffle:
    uid = next(c.uid for c in node.children if isinstance(c, ProcessNode))
    transport = next((s.source for s in upstream if isinstance(s.source, ShuffleTransport)), None)
    if transport is None:
        names = ", ".join(repr(s.name) for s in upstream)
        raise ConfigurationError(
            f"key_by before operator {uid!r} needs a shuffle (its input, source {names}, has several "
            f"splits or discovers more, so one key's records may be in several of them), and no "
            f"source of the job can carry one (a Kafka source can). If the input is already "
            f"partitioned by this key, declare it: key_by(..., partitioned_by_source=True)"
        )
    partitions = node.partitions or max(upstream_split_counts)
    topic = f"{job.name}-{uid}-repartition"
    channel = transport.shuffle_channel(topic, partitions, exactly_once=exactly_once)
    strategy = WatermarkStrategy.for_monotonous_timestamps()  # the watermarks come from markers
    source_node = SourceNode(name=f"{node.name}[{topic}]", source=channel.source, watermarks=strategy)
    source_node.children = node.children  # the key_by's operators read the shuffle
    return Shuffle(node, topic, partitions, channel, sink_index, source_node)


def _check_unique_splits(inputs: Sequence[SourceNode], splits: Sequence[Sequence[str]]) -> None:
    owner: dict[str, str] = {}
    for node, names in zip(inputs, splits, strict=True):
        for split in names:
            if split in owner:
                raise ConfigurationError(
                    f"split {split!r} belongs to sources {owner[split]!r} and {node.name!r}: a job "
                    f"reads each split once; read the topic with one source"
                )
            owner[split] = node.name
