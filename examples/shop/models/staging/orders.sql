MODEL (
  name raw.orders,
  kind SEED (path '../../seeds/orders.csv'),
  columns (order_id INT, customer_id INT, ordered_at DATE, total DECIMAL(10, 2)),
  grain order_id
);
