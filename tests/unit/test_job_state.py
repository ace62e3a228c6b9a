"""The job manager's view of a job, fed worker reports (pure logic)."""

from __future__ import annotations

from typing import Any

import pytest

from eventapp import ConfigurationError
from eventapp.daemon import messages
from eventapp.daemon.config import JobManagerConfig
from eventapp.daemon.job_state import JobState
from eventapp.daemon.status import JobStatus, SlotState, SlotStatus


def _state() -> JobState:
    state = JobState("j", 2, 128, "none")
    state.slots = [SlotState(0, ["t-0", "t-2"]), SlotState(1, ["t-1"])]
    return state


def _status(records: dict[str, int], busy: float) -> dict[str, Any]:
    splits = [
        {
            "split": s,
            "records_in": n,
            "records_out": n * 2,
            "dead_letters": 0,
            "position": n,
            "lag": 5,
            "checkpoint_id": 1,
            "state_bytes": 10,
            "max_timestamp": 1,
        }
        for s, n in records.items()
    ]
    return {"type": "status", "stats": {"splits": splits, "watermark": 1000, "busy_s": busy, "idle_s": 0.0}}


def test_counters_only_grow_across_a_slots_attempts() -> None:
    state = _state()
    state.slot_spawned(0, pid=10)
    state.apply(0, _status({"t-0": 100, "t-2": 50}, busy=3.0))
    state.slot_exited(0, -9, SlotStatus.FAILED)
    state.slot_spawned(0, pid=11)  # the restarted worker counts from zero again
    state.apply(0, _status({"t-0": 7, "t-2": 1}, busy=0.5))
    assert dict(state.records_in.items()) == {"t-0": 107.0, "t-2": 51.0}
    assert dict(state.records_out.items()) == {"t-0": 214.0, "t-2": 102.0}
    assert dict(state.busy.items()) == {"0": 3.5}
    assert state.restarts == 1


def test_readiness_needs_every_slot_started_and_the_job_running() -> None:
    state = _state()
    state.slot_spawned(0, pid=1)
    state.slot_spawned(1, pid=2)
    state.set_status(JobStatus.RUNNING)
    assert not state.ready()
    state.apply(0, {"type": "started", "restore_s": 0.2})
    assert not state.ready()
    state.apply(1, {"type": "started", "restore_s": 0.1})
    assert state.ready() and state.restores == [0.2, 0.1]
    state.slot_exited(1, 1, SlotStatus.FAILED)
    assert not state.ready()


def test_a_failure_report_becomes_the_exception_entry() -> None:
    state = _state()
    state.slot_spawned(1, pid=5)
    state.apply(
        1,
        {
            "type": "failed",
            "error_type": "RecordProcessingError",
            "error": "boom",
            "split": "t-1",
            "position": 41,
            "operator": "op",
            "record": "'x'",
        },
    )
    entry = state.slot_exited(1, 1, SlotStatus.FAILED)
    assert entry is not None and (entry.split, entry.position, entry.record) == ("t-1", 41, "'x'")
    history = state.exception_history(10)["exceptionHistory"]
    assert history["entries"][0]["exceptionName"] == "RecordProcessingError" and not history["truncated"]
    silent = state.slot_exited(1, -9, SlotStatus.FAILED)  # killed: nothing reported this attempt?
    assert silent is not None and silent.exit_code == -9
    assert state.exception_history(1)["exceptionHistory"]["truncated"]


def test_terminal_status_sticks() -> None:
    state = _state()
    state.set_status(JobStatus.FAILED)
    state.set_status(JobStatus.RUNNING)
    assert state.status is JobStatus.FAILED and state.ended_ms is not None


def test_messages_round_trip_and_torn_lines_are_ignored() -> None:
    line = messages.encode(messages.CHECKPOINT_ACK, trigger="t1", checkpoint_ids={"a-0": 3})
    assert messages.decode(line) == {"type": "checkpoint_ack", "trigger": "t1", "checkpoint_ids": {"a-0": 3}}
    assert messages.decode(line[:10]) is None
    assert messages.decode(b"[1, 2]") is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"parallelism": 0}, "--parallelism must be >= 1"),
        ({"rest_port": 70000}, "--rest-port must be a port number"),
        ({"rest_host": "0.0.0.0"}, "pass --rest-token-file PATH (or set EVENTAPP_REST_TOKEN)"),
        ({"tls_certfile": "c.pem"}, "--rest-tls-cert and --rest-tls-key go together"),
    ],
)
def test_job_manager_config_is_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        JobManagerConfig(**{"target": "m:j", "parallelism": 2, **kwargs})
    assert message in str(caught.value)


def test_loopback_and_a_token_on_any_host_are_fine() -> None:
    JobManagerConfig(target="m:j", parallelism=1, rest_host="::1")
    JobManagerConfig(target="m:j", parallelism=1, rest_host="0.0.0.0", rest_token="t")
