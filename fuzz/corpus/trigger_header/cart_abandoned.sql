-- description: A cart worth more than 100 was abandoned (the Simon Data guide's event trigger).
-- schedule: */10 * * * *
-- workspace: shop
-- requires_identity: true
SELECT client_id, user_id, email, seq,
       json_get_float(properties, 'cart_value') AS cart_value,
       json_get_int(properties, 'items') AS items
FROM new_events
WHERE event_name = 'cart_abandoned'
  AND json_get_float(properties, 'cart_value') > 100
