"""Builds a task's operator chain from a job's graph (the nodes of :mod:`eventapp.stream`)."""

from __future__ import annotations

from dataclasses import dataclass

from eventapp.errors import ConfigurationError
from eventapp.graph import (
    FilterNode,
    FlatMapNode,
    MapNode,
    Node,
    ProcessNode,
    SideOutputNode,
    SinkNode,
    SourceNode,
    UnionNode,
)
from eventapp.runtime.keyed_process import KeyedProcessOperator
from eventapp.runtime.operators import (
    DISCARD,
    Broadcast,
    FilterOperator,
    FlatMapOperator,
    MapOperator,
    Operator,
    SinkOperator,
)

__all__ = ["Chain", "build_chain"]


@dataclass(frozen=True)
class Chain:
    """A task's operators: ``head`` receives the source's records; ``operators`` lists every
    operator upstream first (the order processing-time timers fire in); ``keyed`` the keyed ones."""

    head: Operator
    operators: tuple[Operator, ...]

    @property
    def keyed(self) -> tuple[KeyedProcessOperator, ...]:
        return tuple(op for op in self.operators if isinstance(op, KeyedProcessOperator))


def build_chain(source: SourceNode) -> Chain:
    """The operators for ``source``'s subtree (new instances on every call)."""
    operators: list[Operator] = []
    built: dict[int, Operator] = {}
    head = _fan_out(source.name, [_build(child, operators, built) for child in source.children])
    return Chain(head, tuple(operators))


def _fan_out(name: str, targets: list[Operator]) -> Operator:
    if not targets:
        return DISCARD
    if len(targets) == 1:
        return targets[0]
    return Broadcast(f"{name}[out]", targets)


def _build(node: Node, operators: list[Operator], built: dict[int, Operator]) -> Operator:
    """The operator of ``node`` (built once: a node after a union has several parents)."""
    found = built.get(id(node))
    if found is None:
        found = built[id(node)] = _build_new(node, operators, built)
    return found


def _build_new(node: Node, operators: list[Operator], built: dict[int, Operator]) -> Operator:
    # Upstream first: remember the slot before building the children.
    slot = len(operators)
    children = [_build(child, operators, built) for child in node.children]
    op: Operator
    if isinstance(node, MapNode):
        op = MapOperator(node.name, node.fn)
    elif isinstance(node, FilterNode):
        op = FilterOperator(node.name, node.fn)
    elif isinstance(node, FlatMapNode):
        op = FlatMapOperator(node.name, node.fn)
    elif isinstance(node, ProcessNode):
        side = {tag: _build(side_node, operators, built) for tag, side_node in node.side_outputs.items()}
        op = KeyedProcessOperator(
            name=node.name, uid=node.uid, function=node.fn, key_selector=node.key_selector, side_outputs=side
        )
    elif isinstance(node, SinkNode):
        op = SinkOperator(node.name, node.index)
    elif isinstance(node, SideOutputNode | UnionNode):
        return _fan_out(node.name, children)
    else:
        raise ConfigurationError(f"no operator for graph node {node!r}")
    if children:
        op.output = _fan_out(node.name, children)
    operators.insert(slot, op)
    return op
