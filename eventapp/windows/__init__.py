"""Windows on keyed streams, with Flink's semantics: ``stream.key_by(f).window(assigner)``, then
optionally ``.trigger(...)``, ``.allowed_lateness(ms)``, ``.side_output_late_data(tag)``,
``.evictor(...)``, and ``.reduce(...)``, ``.aggregate(...)`` or ``.process(...)``.

Built on keyed state and durable timers (see ``docs/windows.md``).
"""

from eventapp.windows.assigners import (
    EventTimeSessionWindows,
    GlobalWindows,
    ProcessingTimeSessionWindows,
    SlidingEventTimeWindows,
    SlidingProcessingTimeWindows,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
    WindowAssigner,
)
from eventapp.windows.evictors import CountEvictor, Evictor, TimeEvictor
from eventapp.windows.functions import ProcessWindowFunction, WindowContext, WindowValueState
from eventapp.windows.operator import WindowOperator
from eventapp.windows.triggers import (
    ContinuousEventTimeTrigger,
    ContinuousProcessingTimeTrigger,
    CountTrigger,
    EventTimeTrigger,
    NeverTrigger,
    ProcessingTimeTrigger,
    PurgingTrigger,
    Trigger,
    TriggerContext,
    TriggerResult,
)
from eventapp.windows.window import GlobalWindow, TimeWindow, Window
from eventapp.windows.windowed_stream import WindowedStream

__all__ = [
    "ContinuousEventTimeTrigger",
    "ContinuousProcessingTimeTrigger",
    "CountEvictor",
    "CountTrigger",
    "EventTimeSessionWindows",
    "EventTimeTrigger",
    "Evictor",
    "GlobalWindow",
    "GlobalWindows",
    "NeverTrigger",
    "ProcessWindowFunction",
    "ProcessingTimeSessionWindows",
    "ProcessingTimeTrigger",
    "PurgingTrigger",
    "SlidingEventTimeWindows",
    "SlidingProcessingTimeWindows",
    "TimeEvictor",
    "TimeWindow",
    "Trigger",
    "TriggerContext",
    "TriggerResult",
    "TumblingEventTimeWindows",
    "TumblingProcessingTimeWindows",
    "Window",
    "WindowAssigner",
    "WindowContext",
    "WindowOperator",
    "WindowValueState",
    "WindowedStream",
]
