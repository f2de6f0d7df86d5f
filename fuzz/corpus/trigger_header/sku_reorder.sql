-- description: An order left a SKU below 50 in stock (the Xano seed's sku_reorder); keyed by the buyer.
-- schedule: */5 * * * *
-- workspace: shop
-- requires_identity: false
SELECT user_id, client_id, seq,
       properties->>'sku' AS sku,
       json_get_int(properties, 'stock_remaining') AS stock_remaining
FROM new_events
WHERE event_name = 'order_completed'
  AND json_get_int(properties, 'stock_remaining') < 50
