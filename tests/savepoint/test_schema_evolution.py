"""State schema evolution on restore, on both backends: from a harness snapshot, from a job's
committed checkpoint and from a savepoint. Compatible changes restore as is, a raised serializer
version migrates every stored value once, an incompatible change fails the job when it opens —
before any record is processed, naming operator, state and field — and restores nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from eventapp import (
    CheckpointConfig,
    Collector,
    ConfigurationError,
    Context,
    DataclassSerializer,
    Job,
    JobConfig,
    KeyedProcessFunction,
    ListStateDescriptor,
    ManualClock,
    RecordProcessingError,
    RestoreRequest,
    Savepoint,
    StateSchemaError,
    StateTtlConfig,
    ValueStateDescriptor,
    create_savepoint,
)
from eventapp.connectors.collection import CollectionSink, CollectionSource
from eventapp.state.store import StateBackend
from eventapp.testing import KeyedProcessFunctionHarness
from tests.savepoint.test_savepoints import backend


@dataclass
class ProfileV1:
    count: int


@dataclass
class ProfileAdded:
    count: int
    label: str = "new"


@dataclass
class ProfileRequired:
    count: int
    label: str


@dataclass
class ProfileV2:
    total: float
    seen: int = 0


def upgrade(fields: dict[str, Any], version: int) -> dict[str, Any]:
    assert version == 1
    return {"total": float(fields["count"]) * 10}


class Track(KeyedProcessFunction[str, str, str]):
    """Keeps a profile per key (declared as a class attribute) and a list of the key's records."""

    profile: ValueStateDescriptor[Any] = ValueStateDescriptor(
        "profile", serializer=DataclassSerializer(ProfileV1)
    )
    history = ListStateDescriptor[str]("history", ttl=StateTtlConfig(ttl_ms=10**12))

    def __init__(self, serializer: DataclassSerializer[Any] | None = None) -> None:
        if serializer is not None:  # the "new code": the same state with another serializer
            self.profile = ValueStateDescriptor("profile", serializer=serializer)

    def process_element(self, value: str, ctx: Context, out: Collector[str]) -> None:
        profile = ctx.get_state(self.profile)
        current = profile.value()
        history = ctx.get_state(self.history)
        history.add(value)
        if isinstance(current, ProfileV2):
            profile.update(ProfileV2(current.total + 1, current.seen + 1))
        else:
            n = 1 if current is None else current.count + 1
            profile.update(type(current)(n) if current is not None else self.profile.serializer.cls(n))
        out.collect(f"{value}:{profile.value()!r}")


def harness(function: Track, kind: str, path: Path, restore_from: Path | None = None) -> Any:
    return KeyedProcessFunctionHarness(
        function, lambda v: v, state_backend=backend(kind, path), restore_from=restore_from
    )


def v1_snapshot(kind: str, tmp_path: Path) -> Path:
    with harness(Track(), kind, tmp_path / "h1") as h:
        for value in ["a", "a", "b"]:
            h.process_element(value)
        return h.snapshot()  # type: ignore[no-any-return]


def test_added_field_with_default_restores_as_is(tmp_path: Path, kind: str) -> None:
    snapshot = v1_snapshot(kind, tmp_path)
    function = Track(DataclassSerializer(ProfileAdded))
    with harness(function, kind, tmp_path / "h2", snapshot) as h:
        assert h.state(function.profile, "a") == ProfileAdded(2, "new")
        h.process_element("a")
        assert h.outputs == ["a:ProfileAdded(count=3, label='new')"]
        assert h.state(Track.history, "a") == ["a", "a", "a"]


def test_field_added_without_default_fails_at_open_naming_it(tmp_path: Path, kind: str) -> None:
    snapshot = v1_snapshot(kind, tmp_path)
    with pytest.raises(
        StateSchemaError, match=r"operator 'harness', state 'profile': field 'label' was added"
    ):
        harness(Track(DataclassSerializer(ProfileRequired)), kind, tmp_path / "h2", snapshot)


def test_raised_version_migrates_every_value_once_and_records_the_new_schema(
    tmp_path: Path, kind: str
) -> None:
    snapshot = v1_snapshot(kind, tmp_path)
    function = Track(DataclassSerializer(ProfileV2, version=2, upgrade=upgrade))
    with harness(function, kind, tmp_path / "h2", snapshot) as h:
        assert h.state(function.profile, "a") == ProfileV2(20.0)
        assert h.state(function.profile, "b") == ProfileV2(10.0)
        h.process_element("b")
        assert h.outputs == ["b:ProfileV2(total=11.0, seen=1)"]
        second = h.snapshot()
    # The new snapshot records version 2: restoring it again is "as is" (the upgrade is not rerun).
    calls: list[int] = []

    def counting(fields: dict[str, Any], version: int) -> dict[str, Any]:
        calls.append(version)
        return upgrade(fields, version)

    again = Track(DataclassSerializer(ProfileV2, version=2, upgrade=counting))
    with harness(again, kind, tmp_path / "h3", second) as h:
        assert h.state(again.profile, "b") == ProfileV2(11.0, 1)
    assert calls == []
    # And the old code cannot read what the new one wrote.
    with pytest.raises(StateSchemaError, match=r"written by version 2 .* newer than this code's version 1"):
        harness(Track(), kind, tmp_path / "h4", second)


class Lazy(KeyedProcessFunction[str, str, str]):
    """Builds its descriptor inside process_element (not declared as an attribute)."""

    def process_element(self, value: str, ctx: Context, out: Collector[str]) -> None:
        state = ctx.get_state(
            ValueStateDescriptor("profile", serializer=DataclassSerializer(ProfileRequired))
        )
        out.collect(repr(state.value()))


def test_a_lazily_registered_incompatible_state_fails_the_record_and_is_not_dead_lettered(
    tmp_path: Path, kind: str
) -> None:
    snapshot = v1_snapshot(kind, tmp_path)
    with harness(Lazy(), kind, tmp_path / "h2", snapshot) as h:  # type: ignore[arg-type]
        with pytest.raises(StateSchemaError, match=r"field 'label'"):
            h.process_element("a")
        assert h.outputs == []


# --- a job restored from its checkpoint or from a savepoint ------------------------------------------

JOB = "schema-job"


def job(
    function: Track, sink: CollectionSink[str], storage: Path, state: StateBackend, records: list[str]
) -> Job:
    source = CollectionSource(records, splits=2, bounded=False)
    j = Job(
        JOB,
        JobConfig(
            state_backend=state,
            clock=ManualClock(1_000),
            checkpoint=CheckpointConfig(storage=storage, interval_ms=600_000),
        ),
    )
    j.from_source(source).key_by(lambda v: v, partitioned_by_source=True).process(
        function, uid="track"
    ).sink_to(sink)
    return j


def run(function: Track, storage: Path, state: StateBackend, records: list[str], **restore: Any) -> list[str]:
    sink: CollectionSink[str] = CollectionSink()
    runner = job(function, sink, storage, state, records).runner(restore=RestoreRequest(**restore))
    try:
        runner.run_until_idle()
        runner.checkpoint()
    finally:
        runner.close()
    return sink.values


FIRST = ["a", "b", "a", "c"]


def test_job_restored_from_its_checkpoint_with_an_incompatible_change_processes_nothing(
    tmp_path: Path, kind: str
) -> None:
    storage = tmp_path / "checkpoints"
    run(Track(), storage, backend(kind, tmp_path / "r1"), FIRST)
    sink: CollectionSink[str] = CollectionSink()
    runner = job(
        Track(DataclassSerializer(ProfileRequired)),
        sink,
        storage,
        backend(kind, tmp_path / "r2"),
        [*FIRST, "a"],
    ).runner()
    with pytest.raises(StateSchemaError, match=r"operator 'track', state 'profile': field 'label'"):
        runner.run_until_idle()
    runner.close()
    assert sink.values == []
    # Nothing was lost: the old code restores the same checkpoint and continues.
    assert run(Track(), storage, backend(kind, tmp_path / "r3"), [*FIRST, "a"]) == ["a:ProfileV1(count=3)"]


def test_savepoint_records_schemas_and_restores_into_migrated_code(tmp_path: Path, kind: str) -> None:
    storage = tmp_path / "checkpoints"
    run(Track(), storage, backend(kind, tmp_path / "r1"), FIRST)
    created = create_savepoint(
        CheckpointConfig(storage=storage).resolved_storage(),
        JOB,
        ["collection-0", "collection-1"],
        tmp_path / "savepoints",
        max_parallelism=128,
        partitioner="murmur2",
    )
    savepoint = Savepoint.open(created.path)
    schemas = savepoint.metadata.operators["track"].schemas
    assert schemas["profile"]["value"] == {
        "name": "dataclass",
        "version": 1,
        "fields": [["count", "int", False]],
    }
    assert schemas["history"]["kind"] == "list" and schemas["history"]["ttl"] is True
    new = Track(DataclassSerializer(ProfileV2, version=2, upgrade=upgrade))
    out = run(
        new,
        tmp_path / "checkpoints-2",
        backend(kind, tmp_path / "r2"),
        [*FIRST, "a", "c"],
        from_savepoint=created.path,
    )
    assert sorted(out) == ["a:ProfileV2(total=21.0, seen=1)", "c:ProfileV2(total=11.0, seen=1)"]
    with pytest.raises(StateSchemaError, match=r"field 'label'"):
        run(
            Track(DataclassSerializer(ProfileRequired)),
            tmp_path / "checkpoints-3",
            backend(kind, tmp_path / "r3"),
            FIRST,
            from_savepoint=created.path,
        )


class Inconsistent(KeyedProcessFunction[str, str, str]):
    """Declares a state and registers another descriptor of the same name: refused, since the
    declared one is what the restore checked."""

    profile: ValueStateDescriptor[Any] = ValueStateDescriptor(
        "profile", serializer=DataclassSerializer(ProfileV1)
    )

    def process_element(self, value: str, ctx: Context, out: Collector[str]) -> None:
        ctx.get_state(ValueStateDescriptor("profile", serializer=DataclassSerializer(ProfileAdded)))


def test_registering_another_descriptor_than_the_declared_one_is_refused(tmp_path: Path) -> None:
    with harness(Inconsistent(), "memory", tmp_path / "h") as h:  # type: ignore[arg-type]
        with pytest.raises(RecordProcessingError) as failure:
            h.process_element("a")
        assert isinstance(failure.value.__cause__, ConfigurationError)
        assert "declares state 'profile' as" in str(failure.value.__cause__)
