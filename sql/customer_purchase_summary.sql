-- Per customer, the purchase summary of seed 002: orders placed, orders cancelled, items bought
-- and amount spent (orders neither cancelled nor returned), average order value, and the first
-- and last order times.
SELECT
    o.customer_id,
    count(*) AS orders,
    count(*) FILTER (WHERE o.status = 'CANCELLED') AS cancelled_orders,
    coalesce(sum(q.quantity) FILTER (WHERE o.status NOT IN ('CANCELLED', 'RETURNED')), 0)
        AS items_bought,
    coalesce(sum(o.total_amount) FILTER (WHERE o.status NOT IN ('CANCELLED', 'RETURNED')), 0)
        AS total_spent,
    avg(o.total_amount) FILTER (WHERE o.status NOT IN ('CANCELLED', 'RETURNED'))
        AS average_order_value,
    min(o.placed_at) AS first_order_at,
    max(o.placed_at) AS last_order_at
FROM orders AS o
LEFT JOIN (
    SELECT order_id, sum(quantity) AS quantity FROM order_items GROUP BY order_id
) AS q ON q.order_id = o.order_id
WHERE o.customer_id IS NOT NULL
GROUP BY o.customer_id
