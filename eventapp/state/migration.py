"""Checking (and migrating) restored state when an operator registers it.

When a keyed operator first registers a state, :func:`reconcile_state` compares the state's schema
recorded for each split (restored from its checkpoint or savepoint) with the descriptor's, through
:func:`~eventapp.state.schema.plan_migration`: as is, the split's record is updated; after
migration, every stored value of the state in the split is rewritten by the new serializer once,
in the split's store (the next checkpoint holds the rewritten values with the new schema; a crash
before it restores the old ones, which are migrated again); incompatible, the job fails with a
:class:`~eventapp.errors.StateSchemaError` before the state is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import structlog

from eventapp.errors import StateSchemaError
from eventapp.state.descriptors import StateDescriptor
from eventapp.state.handles import rewrite_payloads
from eventapp.state.keys import state_prefix
from eventapp.state.schema import Migration, StateSchema, plan_migration, schema_of
from eventapp.state.store import KeyedStateStore

__all__ = ["SchemaHolder", "reconcile_state"]

log = structlog.get_logger("eventapp.state")


class SchemaHolder(Protocol):
    """A split as schema reconciliation sees it (the split task)."""

    @property
    def id(self) -> str: ...

    @property
    def store(self) -> KeyedStateStore: ...

    @property
    def schemas(self) -> dict[str, dict[str, Any]]: ...


def reconcile_state(uid: str, descriptor: StateDescriptor[Any], splits: Mapping[str, SchemaHolder]) -> None:
    """Check ``descriptor`` against each split's recorded schema of the state, migrate where the
    change needs it, and record the descriptor's schema for the split.

    :raises StateSchemaError: incompatible, or a stored value could not be migrated.
    """
    schema = schema_of(descriptor)
    data = schema.to_json()
    name = descriptor.name
    for split in splits.values():
        states = split.schemas.setdefault(uid, {})
        recorded = states.get(name)
        if recorded is not None and recorded != data:
            try:
                old = StateSchema.from_json(recorded)
            except (KeyError, TypeError, ValueError) as exc:
                raise StateSchemaError(
                    f"operator {uid!r}, state {name!r}: the schema recorded for split {split.id!r} is "
                    f"unreadable ({exc}); the snapshot is damaged"
                ) from exc
            migration = plan_migration(uid, name, old, descriptor)
            if migration is not None:
                count = _migrate(split, uid, name, schema, migration)
                log.warning(
                    "state.migrated",
                    operator=uid,
                    state=name,
                    split=split.id,
                    entries=count,
                    from_version=old.value.version,
                    to_version=schema.value.version,
                )
        states[name] = data


def _migrate(split: SchemaHolder, uid: str, name: str, schema: StateSchema, migration: Migration) -> int:
    store = split.store
    rewritten: list[tuple[bytes, bytes]] = []
    for entry, value in store.scan(state_prefix(uid, name)):
        try:
            rewritten.append((entry, rewrite_payloads(schema.kind, schema.ttl, value, migration)))
        except Exception as exc:
            raise StateSchemaError(
                f"operator {uid!r}, state {name!r}: a stored value in split {split.id!r} could not be "
                f"migrated to serializer version {schema.value.version} ({type(exc).__name__}: {exc}); "
                f"fix the serializer's loads_version/upgrade, or restore with the previous code"
            ) from exc
    for entry, value in rewritten:
        store.put(entry, value)
    return len(rewritten)
