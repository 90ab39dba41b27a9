-- The current state of each order of the legacy databases, from their Debezium change events:
-- per source table (topic) and order the change latest in the source's log (`cdc_position`, then
-- the Kafka offset), without orders whose latest change deletes them or that a truncate of their
-- table removed, with the order's current line items from the item table's change events. Reads
-- the change rows whose mapping gives them the event type LEGACY_ORDER (one order per row) or
-- LEGACY_ORDER_ITEM (one line item per row, `event_id` its key), as the example mappings of
-- config/archiver.toml do.
WITH truncations AS (
    SELECT kafka_topic, max(cdc_position) AS truncated_at
    FROM order_events
    WHERE cdc_op = 't'
    GROUP BY kafka_topic
),
order_changes AS (
    SELECT
        kafka_topic, order_id, customer_id, facility_id, status, total_amount, currency,
        event_time, cdc_op, cdc_source_ts, cdc_position, cdc_tx_id,
        row_number() OVER (
            PARTITION BY kafka_topic, order_id
            ORDER BY cdc_position DESC NULLS LAST, kafka_offset DESC
        ) AS newest
    FROM order_events
    WHERE cdc_op IN ('c', 'u', 'd', 'r') AND event_type = 'LEGACY_ORDER' AND order_id IS NOT NULL
),
item_changes AS (
    SELECT
        kafka_topic, order_id, event_id, items[1] AS item, cdc_op, cdc_position,
        row_number() OVER (
            PARTITION BY kafka_topic, event_id
            ORDER BY cdc_position DESC NULLS LAST, kafka_offset DESC
        ) AS newest
    FROM order_events
    WHERE cdc_op IN ('c', 'u', 'd', 'r') AND event_type = 'LEGACY_ORDER_ITEM'
        AND event_id IS NOT NULL
),
current_items AS (
    SELECT c.order_id, array_agg(c.item ORDER BY c.event_id) AS items
    FROM item_changes AS c
    LEFT JOIN truncations AS t ON t.kafka_topic = c.kafka_topic
    WHERE c.newest = 1 AND c.cdc_op <> 'd' AND c.order_id IS NOT NULL
        AND (t.truncated_at IS NULL OR c.cdc_position > t.truncated_at)
    GROUP BY c.order_id
)
SELECT
    o.order_id,
    o.customer_id,
    o.facility_id,
    o.status,
    o.total_amount,
    o.currency,
    o.event_time AS updated_at,
    i.items,
    coalesce(cardinality(i.items), 0) AS item_count,
    o.cdc_op AS last_op,
    o.cdc_source_ts AS source_committed_at,
    o.cdc_position AS source_position,
    o.cdc_tx_id AS source_tx_id,
    o.kafka_topic AS source_topic
FROM order_changes AS o
LEFT JOIN truncations AS t ON t.kafka_topic = o.kafka_topic
LEFT JOIN current_items AS i ON i.order_id = o.order_id
WHERE o.newest = 1 AND o.cdc_op <> 'd'
    AND (t.truncated_at IS NULL OR o.cdc_position > t.truncated_at)
