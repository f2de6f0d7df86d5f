-- description: A deposit was started (the Flows seed's "Deposit Started"); fires per event.
-- schedule: every 30s
-- workspace: shop
SELECT event_id, client_id, user_id, email, requires_identity,
       json_get_int(properties, 'amount') AS amount,
       properties->>'method' AS method
FROM new_events
WHERE event_name = 'deposit_started'
