MODEL (
  name demo.view_model,
  kind VIEW,
  description 'Items ordered more than once'
);

SELECT
  item_id,
  num_orders
FROM demo.full_model
WHERE
  num_orders > 1
