-- One row per line item of each order, as placed: SKU, quantity, unit and sale price and the line
-- total (quantity × sale price), with the order's customer, facility, status and placement time.
SELECT
    order_id,
    customer_id,
    facility_id,
    status,
    placed_at,
    order_date,
    item['sku'] AS sku,
    item['quantity'] AS quantity,
    item['unit_price'] AS unit_price,
    item['sale_price'] AS sale_price,
    item['quantity'] * item['sale_price'] AS line_total
FROM (
    SELECT order_id, customer_id, facility_id, status, placed_at, order_date, unnest(items) AS item
    FROM orders
) AS i
