"""Sends Segment calls to a tripwire server with Segment's own python library
(segment-analytics-python), and prints each message the library built (its
generated messageId included) as one JSON line, so the test can look for it.

Usage: python3 segment_client.py BASE_URL WRITE_KEY

The library posts every call to BASE_URL/v1/batch with the write key as HTTP
Basic user name (and again as `writeKey` in the body). In `sync_mode` each call
is posted at once and an answer other than 2xx raises, failing this script.
"""

import json
import sys

try:
    import segment.analytics as analytics
    from segment.analytics.client import Client
except ImportError as error:
    sys.exit(f"{error}: pip install segment-analytics-python==2.4.0")

base_url, write_key = sys.argv[1], sys.argv[2]

analytics.write_key = write_key
analytics.host = base_url
analytics.sync_mode = True


def sent(call):
    """The message of a `(success, message)` the library returns."""
    success, message = call
    assert success, message
    print(json.dumps(message))


# A visitor before signing up: only an anonymous id.
sent(analytics.track(anonymous_id="anon-1", event="Product Viewed",
                     properties={"sku": "SKU-1", "price": 12.5}))
# Signs up: both ids, and who they are.
sent(analytics.identify(user_id="user-1", anonymous_id="anon-1",
                        traits={"email": "ada@example.com", "plan": "pro"}))
sent(analytics.track(user_id="user-1", anonymous_id="anon-1", event="Order Completed",
                     properties={"order_id": "o-1", "total": 30.5, "items": 2}))

# The same library with gzip on: `Content-Encoding: gzip`.
gzipped = Client(write_key, host=base_url, sync_mode=True, gzip=True)
sent(gzipped.track(user_id="user-1", event="Cart Viewed", properties={"items": 0}))
