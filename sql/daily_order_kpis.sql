-- Per day and facility: orders placed that day, revenue (orders neither cancelled nor returned),
-- cancellations (orders placed that day whose latest status is CANCELLED) and average order value.
SELECT
    order_date AS day,
    facility_id,
    count(*) AS orders,
    coalesce(sum(total_amount) FILTER (WHERE status NOT IN ('CANCELLED', 'RETURNED')), 0)
        AS revenue,
    count(*) FILTER (WHERE status = 'CANCELLED') AS cancellations,
    avg(total_amount) FILTER (WHERE status NOT IN ('CANCELLED', 'RETURNED'))
        AS average_order_value
FROM orders
GROUP BY order_date, facility_id
