"""Ownership claims against a real broker: instances are ordered by (start time, id), the same for
every split, so interleaved claims of two workers started at once leave exactly one owner."""

from __future__ import annotations

import pytest

from eventapp.connectors.kafka import KafkaCommitConfig
from eventapp.connectors.kafka.ownership import SplitOwnership
from tests.support.broker import KafkaBroker

pytestmark = pytest.mark.kafka


def config(broker: KafkaBroker, group_id: str, checkpoint_topic: str) -> KafkaCommitConfig:
    return KafkaCommitConfig(
        bootstrap_servers=broker.bootstrap_servers,
        group_id=group_id,
        transactional_id_prefix=f"tx-{group_id}",
        checkpoint_topic=checkpoint_topic,
        create_checkpoint_topic=False,
        operation_timeout_s=15.0,
    )


def test_interleaved_claims_of_two_instances_leave_exactly_one_owner(
    kafka_broker: KafkaBroker, group_id: str, checkpoint_topic: str
) -> None:
    cfg = config(kafka_broker, group_id, checkpoint_topic)
    older, newer = ("worker-a", 1_000), ("worker-b", 2_000)
    a0, a1 = SplitOwnership(cfg, "in-0", older), SplitOwnership(cfg, "in-1", older)
    b0, b1 = SplitOwnership(cfg, "in-0", newer), SplitOwnership(cfg, "in-1", newer)
    a0.claim()
    b0.claim()
    b1.claim()
    a1.claim()  # the older instance's claim of in-1 lands last
    superseding = a0.newer_claim()
    assert superseding is not None and superseding.instance == "worker-b", "a steps back on in-0"
    assert b1.newer_claim() is None, "a's later claim of in-1 does not make b step back: a is older"
    assert b0.newer_claim() is None
    # a, fenced on in-1 by b, checks when it recovers again: b is newer, so it stops there as well.
    later = a1.newer_claim()
    assert later is None, "b claimed in-1 before a's claim: a learns of b only when fenced"
    b1.claim()  # b, fenced by a on in-1, recovers again with a fresh claim
    stepping_back = a1.newer_claim()
    assert stepping_back is not None and stepping_back.instance == "worker-b"
    assert "started at" in stepping_back.describe() and "offset" in stepping_back.describe()


def test_claims_are_remembered_across_recoveries_in_one_process(
    kafka_broker: KafkaBroker, group_id: str, checkpoint_topic: str
) -> None:
    """A commit point recovering a split again (a new object) checks from the process's previous
    claim, so a newer instance that claimed in between is seen."""
    cfg = config(kafka_broker, group_id, checkpoint_topic)
    me, other = ("worker-me", 1_000), ("worker-new", 5_000)
    first = SplitOwnership(cfg, "in-0", me)
    first.claim()
    SplitOwnership(cfg, "in-0", other).claim()
    again = SplitOwnership(cfg, "in-0", me)
    assert again.claim_offset == first.claim_offset
    found = again.newer_claim()
    assert found is not None and found.instance == "worker-new"
