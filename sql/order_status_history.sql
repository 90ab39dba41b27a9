-- The journey of each order in time order: one row per status event with its step number, the
-- status it moved from, and the time since the previous step. Statuses from every producer are
-- upper-cased, and "placed" is named CREATED as the other producers name it.
SELECT
    order_id,
    row_number() OVER (
        PARTITION BY order_id ORDER BY event_time, kafka_timestamp, kafka_topic, kafka_offset
    ) AS step,
    CASE upper(status) WHEN 'PLACED' THEN 'CREATED' ELSE upper(status) END AS status,
    CASE upper(previous_status) WHEN 'PLACED' THEN 'CREATED' ELSE upper(previous_status) END
        AS previous_status,
    event_time,
    event_time - lag(event_time) OVER (
        PARTITION BY order_id ORDER BY event_time, kafka_timestamp, kafka_topic, kafka_offset
    ) AS since_previous,
    event_type,
    customer_id,
    facility_id,
    kafka_topic,
    kafka_partition,
    kafka_offset,
    event_date
FROM order_events
WHERE order_id IS NOT NULL AND decode_error IS NULL AND status IS NOT NULL
