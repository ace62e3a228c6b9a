"""Shared test infrastructure: real brokers (Kafka protocol, Redis) and an exactly-once audit reader."""
