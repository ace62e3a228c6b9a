"""One input of a running task: a source (or a shuffle read back), the splits of it the task reads,
their reader, their combined watermark and the chain head their records enter.

The runner polls its inputs in turn and advances each input's watermark on its own; operators fed
by several inputs take the minimum (:class:`eventapp.runtime.chain.InputChannel`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventapp.clock import Clock
from eventapp.errors import ConfigurationError
from eventapp.graph import SourceNode
from eventapp.runtime.chain import Chain, build_chain
from eventapp.runtime.operators import Operator
from eventapp.runtime.plan import JobPlan, Shuffle, plan_job
from eventapp.runtime.shuffle import ShuffleReader
from eventapp.runtime.split_task import SplitTask
from eventapp.runtime.task_setup import apply_start_positions
from eventapp.runtime.watermark_alignment import SplitPacer
from eventapp.source import SourceReader, SourceRecord
from eventapp.watermarks import MAX_WATERMARK, MIN_WATERMARK

if TYPE_CHECKING:
    from eventapp.stream import Job

__all__ = ["TaskInput", "TaskPlan", "purge_shuffles"]


class TaskInput:
    """See the module docstring."""

    def __init__(self, node: SourceNode, head: Operator, shuffle: Shuffle | None) -> None:
        self.node = node
        self.source = node.source
        self.strategy = node.watermarks
        self.head = head
        self.shuffle = shuffle
        self.splits: list[str] = []
        self.reader: SourceReader[Any] | None = None
        self.pacer: SplitPacer | None = None
        self.watermark = MIN_WATERMARK
        #: The reader returned its last record and the watermark went to +inf.
        self.finished = False

    @property
    def name(self) -> str:
        return self.node.name

    def open_reader(self, tasks: Mapping[str, SplitTask]) -> None:
        """Create the reader of :attr:`splits`, starting each where its task is."""
        own = {s: tasks[s] for s in self.splits}
        start_positions = {s: t.position for s, t in own.items() if t.position is not None}
        reader = self.source.create_reader(self.splits, start_positions)
        self.reader = reader
        apply_start_positions(own, reader.start_positions(), self.source.name)
        if self.shuffle is not None:
            self.reader = ShuffleReader(reader, self.splits, self.shuffle.upstream_splits)
            self.apply_announced(tasks)
        self.pacer = SplitPacer.create(self.strategy, self.reader, self.source.name)

    def use_reader(self, reader: SourceReader[Any]) -> None:
        """A reader made elsewhere (a consumer group's)."""
        self.reader = reader
        self.pacer = SplitPacer.create(self.strategy, reader, self.source.name)

    def poll(self, max_records: int, timeout: float) -> Sequence[SourceRecord[Any]]:
        if self.finished:
            return ()
        reader = self.reader
        assert reader is not None
        return reader.poll(max_records, timeout)

    def process(
        self, records: Sequence[SourceRecord[Any]], tasks: Mapping[str, SplitTask], clock: Clock
    ) -> None:
        """Walk ``records`` (of this input's splits) through their split tasks."""
        assigner = self.strategy.timestamp_assigner
        source = self.name
        # Readers hand out a split's records together: process them run by run.
        start, count = 0, len(records)
        while start < count:
            split = records[start].split
            end = start + 1
            while end < count and records[end].split == split:
                end += 1
            tasks[split].process_many(
                records[start:end] if start or end < count else records, assigner, source
            )
            start = end
        if self.strategy.idleness_ms is not None:
            now = clock.now_ms()
            for split in {r.split for r in records}:
                tasks[split].watermark.last_active_ms = now

    def apply_announced(self, tasks: Mapping[str, SplitTask]) -> None:
        """A shuffle's splits take the watermarks its markers announced."""
        if isinstance(self.reader, ShuffleReader):
            for split, watermark in self.reader.announced_watermarks().items():
                task = tasks.get(split)
                if task is not None:
                    task.watermark.announced = watermark
            for split, position in self.reader.consumed_positions().items():
                task = tasks.get(split)
                if task is not None and (task.position is None or position > task.position):
                    task.position = position

    def combined_watermark(self, tasks: Mapping[str, SplitTask], now_ms: int) -> int | None:
        """The input's watermark now (``None``: nothing to say), marking finished splits."""
        if not self.strategy.emits_watermarks or not self.splits or self.finished:
            return None
        reader = self.reader
        assert reader is not None
        own = [tasks[s] for s in self.splits if s in tasks]
        for split in reader.finished_splits():
            task = tasks.get(split)
            if task is not None:
                task.watermark.finished = True
        self.apply_announced(tasks)
        pacer = self.pacer
        return pacer.combine(own, now_ms) if pacer is not None else None

    def is_exhausted(self) -> bool:
        """The reader has returned its last record (a bounded input)."""
        return self.reader is not None and self.reader.is_finished()

    def emit_watermark(self, watermark: int) -> int:
        self.watermark = watermark
        if watermark == MAX_WATERMARK:
            self.finished = self.finished or self.is_exhausted()
        return self.head.process_watermark(watermark)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None


@dataclass(frozen=True)
class TaskPlan:
    """A job planned for a task: the plan, the operator chain and one input per plan input."""

    plan: JobPlan
    chain: Chain
    inputs: list[TaskInput]

    @classmethod
    def create(cls, job: Job, *, group: bool) -> TaskPlan:
        plan = plan_job(job)
        chain = build_chain(plan)
        inputs = [
            TaskInput(node, head, plan.shuffle_reading(node))
            for node, head in zip(plan.inputs, chain.heads, strict=True)
        ]
        if group and len(inputs) > 1:
            raise ConfigurationError(
                f"job {job.name!r} reads {len(inputs)} inputs (several sources, or a key_by shuffle); "
                f"consumer-group assignment (--group) runs jobs of one input only: run it with static "
                f"splits, or declare key_by(..., partitioned_by_source=True) if the input is "
                f"partitioned by the key"
            )
        return cls(plan, chain, inputs)


def purge_shuffles(inputs: Sequence[TaskInput], tasks: Mapping[str, SplitTask]) -> None:
    """After a checkpoint: let each shuffle's transport drop what its splits here committed as
    read (their positions)."""
    for put in inputs:
        shuffle = put.shuffle
        if shuffle is None or shuffle.channel.purge is None:
            continue
        positions = {
            s: t.position for s in put.splits if (t := tasks.get(s)) is not None and t.position is not None
        }
        if positions:
            shuffle.channel.purge(positions)
