"""Tests of the Kafka connector (source, sink, commit points), mostly against a real broker."""
