MODEL (
  name staging.orders,
  kind VIEW,
  description 'Orders at or above the reporting threshold'
);

SELECT
  order_id,
  customer_id,
  ordered_at,
  total
FROM raw.orders
WHERE total >= @VAR('min_order_total', 0)
