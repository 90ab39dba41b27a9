-- Per customer, the purchase summary of seed 002: orders placed, orders cancelled, items bought
-- and amount spent (orders neither cancelled nor returned), average order value, and the first
-- and last order times.
SELECT
    customer_id,
    count(*) AS orders,
    count(*) FILTER (WHERE status = 'CANCELLED') AS cancelled_orders,
    coalesce(sum(item_quantity) FILTER (WHERE status NOT IN ('CANCELLED', 'RETURNED')), 0)
        AS items_bought,
    coalesce(sum(total_amount) FILTER (WHERE status NOT IN ('CANCELLED', 'RETURNED')), 0)
        AS total_spent,
    avg(total_amount) FILTER (WHERE status NOT IN ('CANCELLED', 'RETURNED'))
        AS average_order_value,
    min(placed_at) AS first_order_at,
    max(placed_at) AS last_order_at
-- Items bought come from each order's units, not from its line items: the summary then reads the
-- events once, and a filter on the customer reaches the key index.
FROM orders
WHERE customer_id IS NOT NULL
GROUP BY customer_id
