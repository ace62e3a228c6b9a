"""Builds a task's operator chain from a job's plan (the graph of :mod:`eventapp.stream`, with the
shuffles of :mod:`eventapp.runtime.plan`).

Every input (a source, or a shuffle read back) has a head operator its splits' records enter. A
node reached along several edges (after a ``union``, across inputs or within one) gets one
:class:`InputChannel` per edge: records pass straight through, and the node's watermark is the
minimum over its channels (Flink's multi-input operators), forwarded when that minimum advances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eventapp.errors import ConfigurationError
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
from eventapp.runtime.broadcast import KeyedBroadcastOperator
from eventapp.runtime.keyed_process import KeyedProcessOperator
from eventapp.runtime.operators import (
    DISCARD,
    Broadcast,
    CoProcessOperator,
    FilterOperator,
    FlatMapOperator,
    MapOperator,
    Operator,
    SinkOperator,
)
from eventapp.runtime.plan import JobPlan, children_of
from eventapp.runtime.record import StreamRecord
from eventapp.runtime.shuffle import ShuffleOperator
from eventapp.watermarks import MIN_WATERMARK

__all__ = ["Chain", "InputChannel", "build_chain"]


@dataclass(frozen=True)
class Chain:
    """A task's operators: ``heads[i]`` receives the records of the plan's input ``i``;
    ``operators`` lists every operator upstream first (the order processing-time timers fire in);
    ``keyed`` the keyed ones."""

    heads: tuple[Operator, ...]
    operators: tuple[Operator, ...]

    @property
    def head(self) -> Operator:
        return self.heads[0]

    @property
    def keyed(self) -> tuple[KeyedProcessOperator, ...]:
        return tuple(op for op in self.operators if isinstance(op, KeyedProcessOperator))


class _WatermarkMin:
    """The watermark of a node with several incoming edges: the minimum over them."""

    def __init__(self, target: Operator, edges: int) -> None:
        self.target = target
        self.marks = [MIN_WATERMARK] * edges
        self.current = MIN_WATERMARK

    def advance(self, edge: int, watermark: int) -> int:
        if watermark <= self.marks[edge]:
            return 0
        self.marks[edge] = watermark
        lowest = min(self.marks)
        if lowest <= self.current:
            return 0
        self.current = lowest
        return self.target.process_watermark(lowest)


class InputChannel(Operator):
    """One incoming edge of a node that has several: records go straight to the node, watermarks
    through the node's minimum over its edges."""

    def __init__(self, name: str, merge: _WatermarkMin, edge: int) -> None:
        super().__init__(name)
        self.output = merge.target
        self._merge = merge
        self._edge = edge

    def process(self, record: StreamRecord) -> None:
        self.output.process(record)

    def process_watermark(self, watermark: int) -> int:
        return self._merge.advance(self._edge, watermark)


def build_chain(plan: JobPlan | SourceNode) -> Chain:
    """The operators for the plan's inputs (new instances on every call). A bare source node is a
    plan with that one input and no shuffles (its subtree's key_by nodes do not shuffle)."""
    return _ChainBuilder(plan).build()


class _ChainBuilder:
    def __init__(self, plan: JobPlan | SourceNode) -> None:
        self.plan = plan if isinstance(plan, JobPlan) else None
        self.inputs: Sequence[SourceNode] = plan.inputs if isinstance(plan, JobPlan) else (plan,)
        self.operators: list[Operator] = []
        self.built: dict[int, Operator] = {}
        self.edges = self._count_edges()
        self.channels: dict[int, list[InputChannel]] = {}

    def build(self) -> Chain:
        heads = tuple(self._fan_out(node.name, self._targets(node)) for node in self.inputs)
        return Chain(heads, tuple(self.operators))

    def _followers(self, node: Node) -> list[Node]:
        """What ``node`` emits to in the chain: nothing for a shuffled key_by (its children read
        the shuffle's input)."""
        return [] if self._is_shuffled(node) else list(children_of(node))

    def _count_edges(self) -> dict[int, int]:
        edges: dict[int, int] = {}
        seen: set[int] = set()
        stack: list[Node] = list(self.inputs)
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            for child in self._followers(node):
                edges[id(child)] = edges.get(id(child), 0) + 1
                stack.append(child)
        return edges

    def _targets(self, node: Node) -> list[Operator]:
        """The edges out of ``node`` (never a shuffled key_by: _build_new builds its own)."""
        return [self._edge(child) for child in node.children]

    def _is_shuffled(self, node: Node) -> bool:
        plan = self.plan
        return plan is not None and isinstance(node, KeyByNode) and plan.shuffle_of(node) is not None

    def _edge(self, node: Node) -> Operator:
        """The operator an edge into ``node`` points at: the node's own, or one of its channels."""
        target = self._build(node)
        count = self.edges.get(id(node), 1)
        if count <= 1 or target is DISCARD:
            return target
        channels = self.channels.get(id(node))
        if channels is None:
            merge = _WatermarkMin(target, count)
            channels = self.channels[id(node)] = [
                InputChannel(f"{node.name}[in{i}]", merge, i) for i in range(count)
            ]
        return channels.pop(0)

    def _fan_out(self, name: str, targets: list[Operator]) -> Operator:
        if not targets:
            return DISCARD
        if len(targets) == 1:
            return targets[0]
        return Broadcast(f"{name}[out]", targets)

    def _build(self, node: Node) -> Operator:
        """The operator of ``node`` (built once: a node after a union has several parents)."""
        found = self.built.get(id(node))
        if found is None:
            found = self.built[id(node)] = self._build_new(node)
        return found

    def _build_new(self, node: Node) -> Operator:
        # Upstream first: remember the slot before building the children.
        slot = len(self.operators)
        op: Operator
        if self.plan is not None and isinstance(node, KeyByNode):
            shuffle = self.plan.shuffle_of(node)
            if shuffle is not None:
                op = ShuffleOperator(
                    node.name,
                    node.key_selector,
                    shuffle.partitions,
                    shuffle.sink_index,
                    shuffle.upstream_splits,
                )
                self.operators.insert(slot, op)
                return op
        children = self._targets(node)
        if isinstance(node, MapNode):
            op = MapOperator(node.name, node.fn)
        elif isinstance(node, FilterNode):
            op = FilterOperator(node.name, node.fn)
        elif isinstance(node, FlatMapNode):
            op = FlatMapOperator(node.name, node.fn)
        elif isinstance(node, ProcessNode):
            side = {tag: self._edge(side_node) for tag, side_node in node.side_outputs.items()}
            if node.broadcast:
                op = KeyedBroadcastOperator(
                    name=node.name, uid=node.uid, function=node.fn, key_selector=node.key_selector,
                    side_outputs=side, broadcast=node.broadcast,
                )  # fmt: skip
            else:
                op = KeyedProcessOperator(
                    name=node.name, uid=node.uid, function=node.fn, key_selector=node.key_selector,
                    side_outputs=side,
                )  # fmt: skip
        elif isinstance(node, CoProcessNode):
            op = CoProcessOperator(node.name, node.fn)
        elif isinstance(node, SinkNode):
            op = SinkOperator(node.name, node.index)
        elif isinstance(node, SideOutputNode | UnionNode | KeyByNode | SourceNode):
            return self._fan_out(node.name, children)
        else:
            raise ConfigurationError(f"no operator for graph node {node!r}")
        if children:
            op.output = self._fan_out(node.name, children)
        self.operators.insert(slot, op)
        return op
