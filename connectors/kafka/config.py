"""Configuration of the Kafka source, sink and commit points: frozen dataclasses validated at
construction, with error messages that say how to fix the problem.

librdkafka settings given in ``consumer_config`` / ``producer_config`` are passed straight through,
except the few that eventapp's guarantees depend on: those are set by eventapp, and a user value that
would break them is rejected with :class:`~eventapp.errors.ConfigurationError`.

The configuration is split into modules, and this one re-exports their public names:

* :mod:`~eventapp.connectors.kafka.source_config`: :class:`KafkaSourceConfig`, :class:`StartPosition`,
  :class:`OffsetReset`;
* :mod:`~eventapp.connectors.kafka.sink_config`: :class:`KafkaSinkConfig`, :class:`DeliveryGuarantee`;
* :mod:`~eventapp.connectors.kafka.commit_config`: :class:`KafkaCommitConfig`,
  :func:`validate_transaction_timeout`;
* :mod:`~eventapp.connectors.kafka.splits`: split ids and the checkpoint topic's name;
* :mod:`~eventapp.connectors.kafka.client_settings`: the librdkafka settings eventapp sets, requires
  or forbids per client (:func:`admin_settings`);
* :mod:`~eventapp.connectors.kafka.config_checks`: the checks of fields the configurations share.
"""

from __future__ import annotations

from .client_settings import admin_settings as admin_settings
from .commit_config import (
    KAFKA_DEFAULT_MAX_TRANSACTION_TIMEOUT_MS as KAFKA_DEFAULT_MAX_TRANSACTION_TIMEOUT_MS,
)
from .commit_config import KafkaCommitConfig, validate_transaction_timeout
from .sink_config import DeliveryGuarantee, KafkaSinkConfig
from .sink_config import HeadersSpec as HeadersSpec
from .source_config import KafkaSourceConfig, OffsetReset, StartPosition
from .splits import DEFAULT_CHECKPOINT_TOPIC, default_checkpoint_topic, parse_split, split_id

__all__ = [
    "DEFAULT_CHECKPOINT_TOPIC",
    "DeliveryGuarantee",
    "KafkaCommitConfig",
    "KafkaSinkConfig",
    "KafkaSourceConfig",
    "OffsetReset",
    "StartPosition",
    "default_checkpoint_topic",
    "parse_split",
    "split_id",
    "validate_transaction_timeout",
]
