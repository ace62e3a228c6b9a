"""Restart strategies (pure decisions) and their --restart-strategy spelling."""

from __future__ import annotations

import random

import pytest

from eventapp import (
    ConfigurationError,
    ExponentialDelayRestart,
    FailureRateRestart,
    FixedDelayRestart,
    NoRestart,
)
from eventapp.daemon.restart import parse_restart_strategy


def test_fixed_delay_restarts_attempts_times() -> None:
    strategy = FixedDelayRestart(attempts=2, delay_s=0.5)
    assert strategy.next_delay([1.0]) == 0.5
    assert strategy.next_delay([1.0, 2.0]) == 0.5
    assert strategy.next_delay([1.0, 2.0, 3.0]) is None


def test_failure_rate_counts_failures_inside_the_interval() -> None:
    strategy = FailureRateRestart(max_failures=2, interval_s=10.0, delay_s=1.0)
    assert strategy.next_delay([0.0, 5.0]) == 1.0
    assert strategy.next_delay([0.0, 5.0, 9.0]) is None  # three within 10 s
    assert strategy.next_delay([0.0, 5.0, 12.0]) == 1.0  # the first fell out of the window


def test_exponential_delay_grows_caps_and_resets_after_a_quiet_period() -> None:
    strategy = ExponentialDelayRestart(initial_s=1.0, max_s=5.0, multiplier=2.0, reset_s=100.0, jitter=0.0)
    assert [strategy.next_delay([float(t) for t in range(n)]) for n in range(1, 6)] == [
        1.0,
        2.0,
        4.0,
        5.0,
        5.0,
    ]
    # 200 s without a failure: the backoff starts over.
    assert strategy.next_delay([0.0, 1.0, 2.0, 202.0]) == 1.0
    assert strategy.next_delay([0.0, 1.0, 2.0, 202.0, 203.0]) == 2.0


def test_exponential_delay_jitter_stays_within_its_factor_and_attempts_fail_the_job() -> None:
    strategy = ExponentialDelayRestart(initial_s=10.0, jitter=0.1, attempts=2)
    rng = random.Random(7)
    delays = [strategy.next_delay([0.0], rng) for _ in range(200)]
    assert all(d is not None and 9.0 <= d <= 11.0 for d in delays)
    assert len({round(d or 0, 6) for d in delays}) > 100  # it does move
    assert strategy.next_delay([0.0, 1.0, 2.0]) is None


def test_flink_defaults() -> None:
    default = ExponentialDelayRestart()
    assert (default.initial_s, default.max_s, default.multiplier, default.reset_s, default.jitter) == (
        1.0,
        60.0,
        1.5,
        3600.0,
        0.1,
    )
    assert FixedDelayRestart() == FixedDelayRestart(attempts=1, delay_s=1.0)
    assert NoRestart().next_delay([0.0]) is None


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("none", NoRestart()),
        ("fixed-delay:attempts=3,delay=500ms", FixedDelayRestart(3, 0.5)),
        ("failure-rate:max-failures=4,interval=2min,delay=2s", FailureRateRestart(4, 120.0, 2.0)),
        ("exponential-delay", ExponentialDelayRestart()),
        ("exponential-delay:initial=2s,max=1h,attempts=9", ExponentialDelayRestart(2.0, 3600.0, attempts=9)),
    ],
)
def test_parse(spec: str, expected: object) -> None:
    strategy = parse_restart_strategy(spec)
    assert strategy == expected
    assert parse_restart_strategy(strategy.describe()) == expected  # describe() round-trips


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "forever",
            "unknown strategy 'forever'; use one of none, fixed-delay, failure-rate, exponential-delay",
        ),
        ("fixed-delay:tries=3", "'tries=3' is not an option of fixed-delay (options: attempts, delay"),
        ("fixed-delay:delay=soon", "delay='soon' is not a number (a duration: 500ms, 2s, 1min)"),
        ("exponential-delay:initial=10s,max=1s", "max (1s) is below initial (10s)"),
        ("failure-rate:max-failures=0", "max-failures must be >= 1"),
    ],
)
def test_bad_specs_say_what_to_write(spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=None) as caught:
        parse_restart_strategy(spec)
    assert message in str(caught.value)
