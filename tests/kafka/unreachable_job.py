"""A job for the broker-outage test: a Kafka source whose bootstrap server is ``$UNREACHABLE_BOOTSTRAP``
(a loopback port nothing listens on). The worker keeps trying to read topic metadata for
``operation_timeout_s``, long enough for the test to see ``kafka.broker_unreachable`` and stop it."""

from __future__ import annotations

import os

from eventapp import Job
from eventapp.connectors.collection import CollectionSink
from eventapp.connectors.kafka import KafkaSource, KafkaSourceConfig


def build_job() -> Job:
    source: KafkaSource[bytes] = KafkaSource(
        KafkaSourceConfig(
            bootstrap_servers=os.environ["UNREACHABLE_BOOTSTRAP"],
            topics=["nowhere"],
            group_id="unreachable-test",
            operation_timeout_s=600.0,
        )
    )
    job = Job("unreachable")
    job.from_source(source).sink_to(CollectionSink())
    return job
