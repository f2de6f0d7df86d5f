-- Everyone who has completed an order: no need to remind them of a cart.
SELECT DISTINCT email FROM events
WHERE event_name = 'order_completed' AND email IS NOT NULL
