"""Produces order events as Avro with Confluent's own client (confluent-kafka's AvroSerializer
and SchemaRegistryClient), as seed 001's producers do, and prints what it produced as JSON lines
for the test to compare the archive with.

    python avro_produce.py <brokers> <registry url> <topic> <count> [--bench <json topic>]

Two versions of the topic's value subject: v1, and v2 (a field added with a default, facility_id
widened to a union with null). Keys are Avro strings. Every third v2 record carries its schema's
GUID in the `__value_schema_id` header instead of the id prefix. Each line: offset, partition,
value and key bytes (hex), and the typed values as produced.

With --bench, for scripts/bench-avro.sh: only the order events, each also sent as the same JSON
document to <json topic>, and one summary line instead of a line per record. The events are then
0.6 s apart (a million span a week, as a live drain sees them) instead of 37 minutes apart (a
test's few thousand span months, so that they fill several partitions).
"""
import datetime
import decimal
import json
import os
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient, header_schema_id_serializer
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

brokers, registry_url, topic, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
json_topic = sys.argv[6] if len(sys.argv) > 6 and sys.argv[5] == "--bench" else None

MONEY = {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2}
ITEM = {"type": "record", "name": "LineItem", "fields": [
    {"name": "sku", "type": "string"},
    {"name": "quantity", "type": "int"},
    {"name": "unit_price", "type": MONEY},
    {"name": "sale_price", "type": MONEY},
]}
V1 = {"type": "record", "name": "OrderEvent", "namespace": "com.example.oms", "fields": [
    {"name": "event_id", "type": "string"},
    {"name": "event_type", "type": "string"},
    {"name": "order_id", "type": "string"},
    {"name": "customer_id", "type": "string"},
    {"name": "facility_id", "type": "string"},
    {"name": "status", "type": {"type": "enum", "name": "Status",
                                "symbols": ["PLACED", "PICKED", "SHIPPED", "DELIVERED", "CANCELLED"]}},
    {"name": "total_amount", "type": MONEY},
    {"name": "currency", "type": "string"},
    {"name": "updated_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "items", "type": {"type": "array", "items": ITEM}},
]}
V2 = json.loads(json.dumps(V1))
V2["fields"][4] = {"name": "facility_id", "type": ["null", "string"], "default": None}
V2["fields"].append({"name": "channel", "type": "string", "default": "web"})
V2["fields"] = [f for f in V2["fields"] if f["name"] != "event_type"]  # a field removed

registry_conf = {"url": registry_url}
if os.environ.get("REGISTRY_BASIC_AUTH"):
    registry_conf["basic.auth.user.info"] = os.environ["REGISTRY_BASIC_AUTH"]
registry = SchemaRegistryClient(registry_conf)
serializers = {
    "v1": AvroSerializer(registry, json.dumps(V1)),
    "v2": AvroSerializer(registry, json.dumps(V2)),
    "v2-header": AvroSerializer(registry, json.dumps(V2),
                                conf={"schema.id.serializer": header_schema_id_serializer}),
}
keys = AvroSerializer(registry, '"string"')
producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": False, "linger.ms": 5,
                     "queue.buffering.max.messages": 500000})
statuses = ["PLACED", "PICKED", "SHIPPED", "DELIVERED", "CANCELLED"]
start = datetime.datetime(2024, 3, 1, 10, 0, 0, 123000, tzinfo=datetime.timezone.utc)
step = datetime.timedelta(milliseconds=600) if json_topic else datetime.timedelta(minutes=37)
pending = []

for i in range(count):
    version = "v1" if i % 2 == 0 else ("v2-header" if i % 3 == 0 else "v2")
    when = start + step * i + datetime.timedelta(milliseconds=i)
    unit = decimal.Decimal(f"{(i % 97) + 1}.{i % 100:02d}")
    event = {
        "event_id": f"ev-{i}",
        "event_type": "order_status_updated",
        "order_id": f"AV-{i // 3}",
        "customer_id": f"C-{i % 41}",
        "facility_id": None if version != "v1" and i % 5 == 0 else f"F-{i % 4}",
        "status": statuses[i % 5],
        "total_amount": unit * 3 - decimal.Decimal("0.01"),
        "currency": "EUR",
        "updated_at": when,
        "items": [{"sku": f"SKU-{i % 13}", "quantity": 3, "unit_price": unit,
                   "sale_price": unit - decimal.Decimal("0.01")}],
    }
    if version != "v1":
        event["channel"] = "store" if i % 2 else "web"
        del event["event_type"]
    headers = []
    value = serializers[version](event, SerializationContext(topic, MessageField.VALUE, headers))
    key = keys(event["order_id"], SerializationContext(topic, MessageField.KEY))
    line = {
        "version": version,
        "key": key.hex(),
        "value": value.hex(),
        "headers": [[k, v.hex()] for k, v in headers],
        "order_id": event["order_id"],
        "customer_id": event["customer_id"],
        "facility_id": event["facility_id"],
        "status": event["status"],
        "total_amount": str(event["total_amount"]),
        "event_time_ms": int(when.timestamp() * 1000),
        "items": 1,
    }

    def delivered(err, msg, line=line):
        if err is not None:
            raise SystemExit(f"delivery failed: {err}")
        line["partition"] = msg.partition()
        line["offset"] = msg.offset()

    if json_topic:
        document = dict(event, updated_at=when.isoformat(), total_amount=str(event["total_amount"]),
                        items=[dict(it, unit_price=str(it["unit_price"]), sale_price=str(it["sale_price"]))
                               for it in event["items"]])
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers, partition=i % 4)
                producer.produce(json_topic, value=json.dumps(document).encode(), key=event["order_id"].encode(),
                                 partition=i % 4)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        continue
    producer.produce(topic, value=value, key=key, headers=headers, partition=i % 2, on_delivery=delivered)
    pending.append(line)
    producer.poll(0)

if json_topic:
    if producer.flush(300) != 0:
        raise SystemExit("records left unsent")
    print(f"produced {count} Avro records to {topic} and their JSON twins to {json_topic}")
    sys.exit(0)

# Other registry formats: a JSON Schema record is a JSON document after its framing (decoded);
# a Protobuf one is archived raw, saying so.
from confluent_kafka.schema_registry import Schema  # noqa: E402

json_id = registry.register_schema(f"{topic}-json-value", Schema(json.dumps(
    {"type": "object", "properties": {"order_id": {"type": "string"}}}), "JSON"))
proto_id = registry.register_schema(f"{topic}-proto-value", Schema(
    'syntax = "proto3"; message Order { string order_id = 1; }', "PROTOBUF"))
document = {"order_id": "JS-1", "customer_id": "C-7", "status": "PLACED", "total_amount": "12.50",
            "updated_at": "2024-03-02T08:00:00.250Z", "items": [{"sku": "SKU-9", "quantity": 1}]}
for value, line in [
    (b"\x00" + json_id.to_bytes(4, "big") + json.dumps(document).encode(),
     {"version": "json-schema", "order_id": "JS-1", "customer_id": "C-7", "status": "PLACED",
      "total_amount": "12.50", "event_time_ms": 1709366400250, "items": 1}),
    (b"\x00" + proto_id.to_bytes(4, "big") + b"\x00\x0a\x04PB-1", {"hostile": "PROTOBUF"}),
]:
    line.update(value=value.hex(), key=None, headers=[])

    def delivered(err, msg, line=line):
        line["partition"] = msg.partition()
        line["offset"] = msg.offset()

    producer.produce(topic, value=value, partition=1, on_delivery=delivered)
    pending.append(line)

# Hostile values, each archived raw with its reason: an id the registry never issued, a v1
# record cut in half, and framing too short to hold an id.
good = bytes.fromhex(pending[0]["value"])
for value, reason in [(b"\x00" + (999999).to_bytes(4, "big") + b"\x02x", "schema id 999999"),
                      (good[: len(good) // 2], "not valid for its schema"),
                      (b"\x00\x00", "fewer than the 5")]:
    line = {"hostile": reason, "value": value.hex(), "key": None, "headers": []}

    def delivered(err, msg, line=line):
        line["partition"] = msg.partition()
        line["offset"] = msg.offset()

    producer.produce(topic, value=value, partition=0, on_delivery=delivered)
    pending.append(line)

if producer.flush(60) != 0:
    raise SystemExit("records left unsent")
for line in pending:
    print(json.dumps(line))
