"""How a window's contents grow and what its function receives: an incremental ``reduce``, an
``AggregateFunction``'s accumulator, or all the elements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from eventapp.state.descriptors import AggregateFunction

__all__ = ["Aggregation"]


class Aggregation:
    """How a window's contents grow and what its function receives: reduce, aggregate or all the
    elements (``kind``)."""

    def __init__(
        self,
        kind: str,
        reduce: Callable[[Any, Any], Any] | None = None,
        aggregate: AggregateFunction[Any, Any, Any] | None = None,
    ) -> None:
        self.kind, self.reduce_fn, self.aggregate_fn = kind, reduce, aggregate

    def add(self, contents: Any, value: Any) -> Any:
        if self.kind == "reduce":
            return (
                value
                if contents is None
                else cast(Callable[[Any, Any], Any], self.reduce_fn)(contents, value)
            )
        if self.kind == "aggregate":
            function = cast(AggregateFunction[Any, Any, Any], self.aggregate_fn)
            return function.add(value, function.create_accumulator() if contents is None else contents)
        return [value] if contents is None else [*contents, value]

    def merge(self, first: Any, second: Any) -> Any:
        if first is None or second is None:
            return second if first is None else first
        if self.kind == "reduce":
            return cast(Callable[[Any, Any], Any], self.reduce_fn)(first, second)
        if self.kind == "aggregate":
            return cast(AggregateFunction[Any, Any, Any], self.aggregate_fn).merge(first, second)
        return [*first, *second]

    def inputs(self, contents: Any) -> list[Any]:
        """What the window function receives for ``contents``."""
        if self.kind == "aggregate":
            return [cast(AggregateFunction[Any, Any, Any], self.aggregate_fn).get_result(contents)]
        return [contents] if self.kind == "reduce" else list(contents)

    def over(self, values: list[Any]) -> list[Any]:
        """The window function's input for the elements left by an evictor."""
        if not values or self.kind == "process":
            return values
        contents = None
        for value in values:
            contents = self.add(contents, value)
        return self.inputs(contents)
