-- The current state of each order: its latest status, when it was placed and last changed, its
-- customer and facility, and the total, currency, line items and units (the items' quantities
-- added up) of its placement event.
SELECT
    order_id,
    CASE upper(latest_status) WHEN 'PLACED' THEN 'CREATED' ELSE upper(latest_status) END AS status,
    customer_id,
    facility_id,
    placed_at,
    updated_at,
    CAST(placed_at AS DATE) AS order_date,
    total_amount,
    currency,
    items,
    cardinality(items) AS item_count,
    item_quantity,
    events
FROM (
    SELECT
        order_id,
        last_value(status ORDER BY event_time, kafka_timestamp, kafka_offset)
            FILTER (WHERE status IS NOT NULL) AS latest_status,
        first_value(customer_id ORDER BY event_time) FILTER (WHERE customer_id IS NOT NULL)
            AS customer_id,
        last_value(facility_id ORDER BY event_time) FILTER (WHERE facility_id IS NOT NULL)
            AS facility_id,
        min(event_time) AS placed_at,
        max(event_time) AS updated_at,
        first_value(total_amount ORDER BY event_time) FILTER (WHERE total_amount IS NOT NULL)
            AS total_amount,
        first_value(currency ORDER BY event_time) FILTER (WHERE currency IS NOT NULL)
            AS currency,
        first_value(items ORDER BY event_time) FILTER (WHERE total_amount IS NOT NULL) AS items,
        first_value(CAST(array_sum(transform(items, i -> i.quantity)) AS BIGINT) ORDER BY event_time)
            FILTER (WHERE total_amount IS NOT NULL) AS item_quantity,
        count(*) AS events
    FROM order_events
    WHERE order_id IS NOT NULL AND decode_error IS NULL
    GROUP BY order_id
) AS o
