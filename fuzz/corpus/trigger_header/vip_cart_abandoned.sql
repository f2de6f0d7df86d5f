-- description: A big cart was abandoned: the event reengage's `vip_event` action emits (a chained event).
-- schedule: */5 * * * *
-- workspace: shop
SELECT email, seq, json_get_float(properties, 'cart_value') AS cart_value
FROM new_events
WHERE event_name = 'vip_cart_abandoned'
