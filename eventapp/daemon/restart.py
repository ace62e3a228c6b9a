"""Restart strategies: whether and when the job manager restarts a failed worker (Flink's
``restart-strategy.type``, with Flink's defaults).

A strategy is configuration (a frozen dataclass) with one pure decision,
:meth:`RestartStrategy.next_delay`: given the times of every failure so far (the last one is the
failure being handled), the seconds to wait before restarting, or ``None`` to give up (the job ends
FAILED). As in Flink, failures are counted per job, while only the failed worker restarts (Flink's
region failover: a worker's splits share nothing with another worker's).

``--restart-strategy`` spells one as ``NAME[:key=value,...]`` (durations in seconds, or with a
``ms``/``s``/``min``/``h`` suffix), for example ``fixed-delay:attempts=3,delay=2s``;
:func:`parse_restart_strategy` reads it.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Protocol, runtime_checkable

from eventapp.errors import ConfigurationError

__all__ = [
    "ExponentialDelayRestart",
    "FailureRateRestart",
    "FixedDelayRestart",
    "NoRestart",
    "RestartStrategy",
    "parse_restart_strategy",
]


@runtime_checkable
class RestartStrategy(Protocol):
    """Decides restarts (see the module docstring)."""

    def next_delay(self, failures: Sequence[float], rng: random.Random | None = None) -> float | None:
        """Seconds until the restart after the last of ``failures`` (monotonic seconds, oldest
        first, at least one), or None: do not restart."""
        ...

    def describe(self) -> str:
        """The strategy as ``--restart-strategy`` spells it."""
        ...


def _positive(name: str, value: float, *, zero: bool = False) -> None:
    if value < 0 or (value == 0 and not zero):
        raise ConfigurationError(
            f"restart strategy: {name} must be {'>= 0' if zero else '> 0'}, got {value!r}"
        )


@dataclass(frozen=True, slots=True)
class NoRestart:
    """Never restart: the first failure fails the job (Flink's ``none``)."""

    def next_delay(self, failures: Sequence[float], rng: random.Random | None = None) -> float | None:
        return None

    def describe(self) -> str:
        return "none"


@dataclass(frozen=True, slots=True)
class FixedDelayRestart:
    """Restart ``attempts`` times, ``delay_s`` after each failure (Flink's ``fixed-delay``:
    attempts 1, delay 1 s)."""

    attempts: int = 1
    delay_s: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 0:
            raise ConfigurationError(f"fixed-delay: attempts must be >= 0, got {self.attempts}")
        _positive("delay", self.delay_s, zero=True)

    def next_delay(self, failures: Sequence[float], rng: random.Random | None = None) -> float | None:
        return self.delay_s if len(failures) <= self.attempts else None

    def describe(self) -> str:
        return f"fixed-delay:attempts={self.attempts},delay={self.delay_s:g}s"


@dataclass(frozen=True, slots=True)
class FailureRateRestart:
    """Restart ``delay_s`` after a failure unless more than ``max_failures`` happened within the
    last ``interval_s`` (Flink's ``failure-rate``: 1 failure per 60 s, delay 1 s)."""

    max_failures: int = 1
    interval_s: float = 60.0
    delay_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ConfigurationError(f"failure-rate: max-failures must be >= 1, got {self.max_failures}")
        _positive("interval", self.interval_s)
        _positive("delay", self.delay_s, zero=True)

    def next_delay(self, failures: Sequence[float], rng: random.Random | None = None) -> float | None:
        now = failures[-1]
        recent = sum(1 for t in failures if now - t <= self.interval_s)
        return self.delay_s if recent <= self.max_failures else None

    def describe(self) -> str:
        return (
            f"failure-rate:max-failures={self.max_failures},interval={self.interval_s:g}s,"
            f"delay={self.delay_s:g}s"
        )


@dataclass(frozen=True, slots=True)
class ExponentialDelayRestart:
    """The default (Flink's ``exponential-delay``): wait ``initial_s``, then ``multiplier`` times
    longer after each further failure, at most ``max_s``, each delay moved by up to ``jitter``
    of itself at random. After ``reset_s`` without a failure the delay starts over at
    ``initial_s``. ``attempts`` (default unlimited) fails the job after that many restarts without
    a reset. Flink's defaults: 1 s, x1.5, 60 s, jitter 0.1, reset after 1 h."""

    initial_s: float = 1.0
    max_s: float = 60.0
    multiplier: float = 1.5
    reset_s: float = 3600.0
    jitter: float = 0.1
    attempts: int | None = None

    def __post_init__(self) -> None:
        _positive("initial", self.initial_s)
        _positive("max", self.max_s)
        _positive("reset", self.reset_s)
        if self.max_s < self.initial_s:
            raise ConfigurationError(
                f"exponential-delay: max ({self.max_s:g}s) is below initial ({self.initial_s:g}s); "
                f"raise max or lower initial"
            )
        if self.multiplier < 1:
            raise ConfigurationError(f"exponential-delay: multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError(f"exponential-delay: jitter must be in [0, 1], got {self.jitter}")
        if self.attempts is not None and self.attempts < 1:
            raise ConfigurationError(f"exponential-delay: attempts must be >= 1, got {self.attempts}")

    def next_delay(self, failures: Sequence[float], rng: random.Random | None = None) -> float | None:
        # Failures since the last quiet stretch of reset_s count towards the backoff.
        streak = 1
        for earlier, later in itertools.pairwise(failures):
            streak = 1 if later - earlier > self.reset_s else streak + 1
        if self.attempts is not None and streak > self.attempts:
            return None
        delay = min(self.max_s, self.initial_s * self.multiplier ** (streak - 1))
        if self.jitter:
            delay += delay * self.jitter * (rng or random).uniform(-1.0, 1.0)
        return max(0.0, delay)

    def describe(self) -> str:
        attempts = "" if self.attempts is None else f",attempts={self.attempts}"
        return (
            f"exponential-delay:initial={self.initial_s:g}s,max={self.max_s:g}s,"
            f"multiplier={self.multiplier:g},reset={self.reset_s:g}s,jitter={self.jitter:g}{attempts}"
        )


_STRATEGIES: dict[str, tuple[type, dict[str, str]]] = {
    # name -> (class, spec key -> field)
    "none": (NoRestart, {}),
    "fixed-delay": (FixedDelayRestart, {"attempts": "attempts", "delay": "delay_s"}),
    "failure-rate": (
        FailureRateRestart,
        {"max-failures": "max_failures", "interval": "interval_s", "delay": "delay_s"},
    ),
    "exponential-delay": (
        ExponentialDelayRestart,
        {
            "initial": "initial_s",
            "max": "max_s",
            "multiplier": "multiplier",
            "reset": "reset_s",
            "jitter": "jitter",
            "attempts": "attempts",
        },
    ),
}

_UNITS = {"ms": 0.001, "min": 60.0, "s": 1.0, "h": 3600.0}


def _duration(text: str) -> float:
    for suffix, factor in _UNITS.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def parse_restart_strategy(spec: str) -> RestartStrategy:
    """The strategy ``spec`` names (see the module docstring)."""
    name, _, options = spec.strip().partition(":")
    known = ", ".join(_STRATEGIES)
    if name not in _STRATEGIES:
        raise ConfigurationError(
            f"--restart-strategy {spec!r}: unknown strategy {name!r}; use one of {known}, for example "
            f"'fixed-delay:attempts=3,delay=2s'"
        )
    cls, keys = _STRATEGIES[name]
    types: dict[str, Callable[[str], object]] = {}
    for f in fields(cls):
        types[f.name] = (
            int if f.name in ("attempts", "max_failures") else (_duration if f.name.endswith("_s") else float)
        )
    values: dict[str, object] = {}
    for item in filter(None, (part.strip() for part in options.split(","))):
        key, sep, raw = item.partition("=")
        if not sep or key not in keys:
            allowed = ", ".join(keys) or "(none)"
            raise ConfigurationError(
                f"--restart-strategy {spec!r}: {item!r} is not an option of {name} (options: {allowed}; "
                f"write key=value, comma-separated)"
            )
        field_name = keys[key]
        try:
            values[field_name] = types[field_name](raw)
        except ValueError:
            raise ConfigurationError(
                f"--restart-strategy {spec!r}: {key}={raw!r} is not a number"
                + (" (a duration: 500ms, 2s, 1min)" if field_name.endswith("_s") else "")
            ) from None
    strategy: RestartStrategy = cls(**values)
    return strategy
