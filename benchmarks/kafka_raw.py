"""The raw loop of ``bench_kafka``: the card workload by hand with confluent-kafka, orjson, rocksdict.

Written the way a careful programmer would: one consumer with every partition assigned, a dict of the
aggregates changed since the last commit, one RocksDB WriteBatch and one Kafka transaction (outputs +
consumed offsets) per commit. It is what eventapp's throughput is compared with.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import rocksdict
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from .kafka_cards import AGGREGATE, SideResult


def run_raw(
    bootstrap: str,
    input_topic: str,
    output_topic: str,
    partitions: int,
    db_dir: Path,
    interval_ms: int,
    per_record_state: bool = False,
) -> SideResult:
    """The same work with the raw libraries: ``assign()`` of every partition, ``consume(1000, 0.02)``,
    ``orjson``, a dict of the aggregates changed since the last commit (a miss reads RocksDB once),
    written to rocksdict with one ``WriteBatch`` per commit, ONE transactional producer for all
    partitions, ``send_offsets_to_transaction`` + ``commit_transaction`` every ``interval_ms``.

    ``per_record_state``: instead, get and put the aggregate in RocksDB for every message (the
    earlier, naive loop)."""
    began = time.perf_counter()
    group = f"raw-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "fetch.queue.backoff.ms": 10,
            "fetch.wait.max.ms": 100,
        }
    )
    consumer.assign([TopicPartition(input_topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"{group}-txn",
            "linger.ms": 5,
            "acks": "all",
            "enable.idempotence": True,
        }
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    db = rocksdict.Rdict(str(db_dir), options)
    write_options = rocksdict.WriteOptions()
    write_options.disable_wal = True  # type: ignore[assignment,method-assign] # a setter, not a method
    db.set_write_options(write_options)
    group_metadata = consumer.consumer_group_metadata()
    positions: dict[int, int] = {}
    at_end: set[int] = set()
    dirty: dict[str, list[Any]] = {}
    commits = 0

    def commit() -> None:
        nonlocal commits
        if dirty:
            batch = rocksdict.WriteBatch(raw_mode=True)
            for card, (count, total) in dirty.items():
                batch.put(card.encode(), AGGREGATE.pack(count, total))
            db.write(batch)
            dirty.clear()
        offsets = [TopicPartition(input_topic, p, o) for p, o in positions.items()]
        producer.send_offsets_to_transaction(offsets, group_metadata, 30)
        producer.commit_transaction(30)
        producer.begin_transaction()
        commits += 1

    loads, dumps, get, send, pack, unpack = (
        orjson.loads,
        orjson.dumps,
        db.get,
        producer.produce,
        AGGREGATE.pack,
        AGGREGATE.unpack,
    )
    partition_eof = KafkaError._PARTITION_EOF
    interval_s = interval_ms / 1000
    read = 0
    setup_s = time.perf_counter() - began
    started = last_commit = time.perf_counter()
    try:
        while True:
            messages = consumer.consume(1_000, 0.02)
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() != partition_eof:
                        raise KafkaException(error)
                    at_end.add(message.partition())  # type: ignore[arg-type]
                    continue
                value = loads(message.value())  # type: ignore[arg-type]
                card = value["card"]
                if per_record_state:
                    key = card.encode()
                    stored = get(key)
                    count, total = (0, 0.0) if stored is None else unpack(stored)
                    count += 1
                    total += value["amount"]
                    db[key] = pack(count, total)
                else:
                    aggregate = dirty.get(card)
                    if aggregate is None:
                        stored = get(card.encode())
                        aggregate = [0, 0.0] if stored is None else list(unpack(stored))
                        dirty[card] = aggregate
                    count = aggregate[0] = aggregate[0] + 1
                    total = aggregate[1] = aggregate[1] + value["amount"]
                payload = dumps({"card": card, "count": count, "sum": total, "ts": value["ts"]})
                try:
                    send(output_topic, payload, key=card)
                except BufferError:
                    producer.poll(0.05)
                    send(output_topic, payload, key=card)
                positions[message.partition()] = message.offset() + 1  # type: ignore[index,operator]
                read += 1
            producer.poll(0)
            now = time.perf_counter()
            if now - last_commit >= interval_s:
                commit()
                last_commit = now
            if not messages and len(at_end) == partitions:
                break
        commit()
        ended = time.perf_counter()
    finally:
        consumer.close()
        producer.flush(10)
        db.close()
    what = "raw loop, per-record RocksDB" if per_record_state else "raw loop"
    return SideResult(what, read, setup_s, ended - started, commits)
