MODEL (
  name marts.customer_revenue,
  kind FULL,
  owner analytics,
  grain customer_id,
  column_descriptions (revenue = 'Sum of qualifying order totals')
);

WITH per_customer AS (
  SELECT customer_id, SUM(total) AS revenue, COUNT(*) AS orders
  FROM staging.orders
  GROUP BY customer_id
)
SELECT
  c.customer_id,
  c.name,
  c.country,
  COALESCE(p.revenue, 0) AS revenue,
  COALESCE(p.orders, 0) AS orders
FROM raw.customers AS c
LEFT JOIN per_customer AS p
  ON c.customer_id = p.customer_id
ORDER BY c.customer_id
