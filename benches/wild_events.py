"""Events for the benches that tripwire's own generator (src/sample.rs) did
not shape: written independently, as an app in the wild sends them.

- shapes: `collect` envelopes, Segment `segment` calls, or `name_payload`
  events; one shape per file, so every bench runs each shape.
- people: most visitors stay anonymous (an anonymousId/clientId only);
  some identify from the browser (anonymous id + user id + email), some
  only server-side (user id + email, no anonymous id); a few share a
  device; emails change now and then.
- properties: nested objects and arrays (a cart with line items, UTM
  parameters, a device block, tags), numbers as numbers and as strings.
- times: roughly in order, jittered by up to ten minutes either way, and
  one event in a hundred arrives hours late.

Deterministic for a seed. Usage:

    python3 benches/wild_events.py --shape collect --events 1000000 \\
        --seed 1 --start-ms 1793491200000 --step-ms 4000 --out FILE

Prints one line of totals as JSON (events, identifies, per event name).
"""
import argparse
import json
import random
import sys

NAMES = [
    ("product_viewed", 30),
    ("search", 12),
    ("cart_abandoned", 14),
    ("checkout_started", 8),
    ("order_completed", 8),
    ("deposit_started", 6),
    ("page_view", 22),
]
CITIES = ["Lisbon", "Osaka", "Lagos", "Quito", "Tromsø", "Zürich", "São Paulo"]
SOURCES = ["newsletter", "google", "partner", "tiktok", None]


def person(rng, pool):
    n = rng.randrange(pool)
    return {
        "anon": f"anon-{n * 7919 % 1000003:07d}-{n % 97:02d}",
        "user": f"usr_{n:06d}" if n % 5 < 2 else None,  # two in five ever log in
        "email": f"p{n}.{rng.choice(['a', 'b'])}@mail.example" if n % 5 < 2 else None,
        "server_only": n % 11 == 0,
    }


def properties(rng, name):
    items = [
        {"sku": f"SKU-{rng.randrange(4000):04d}", "qty": rng.randrange(1, 4),
         "price": round(rng.uniform(2, 300), 2)}
        for _ in range(rng.randrange(1, 5))
    ]
    base = {
        "utm": {"source": rng.choice(SOURCES), "campaign": f"c{rng.randrange(40)}"},
        "device": {"os": rng.choice(["ios", "android", "web"]), "screen": [390, 844]},
        "tags": rng.sample(["sale", "new", "vip", "gift", "eco"], rng.randrange(0, 3)),
    }
    if name in ("cart_abandoned", "checkout_started", "order_completed"):
        value = round(sum(i["qty"] * i["price"] for i in items), 2)
        base["cart"] = {"items": items, "value": value, "currency": "EUR"}
        base["cart_value"] = value if rng.random() < 0.8 else str(value)
    elif name == "search":
        base["query"] = rng.choice(["red shoes", "gift for dad", "ünïcode ☃", 'quote "x"'])
    elif name == "deposit_started":
        base["amount"] = {"value": rng.randrange(10, 5000), "method": rng.choice(["card", "sepa"])}
    else:
        base["url"] = f"/p/{rng.randrange(10000)}"
    return base


def pick_name(rng):
    roll = rng.randrange(sum(w for _, w in NAMES))
    for name, weight in NAMES:
        if roll < weight:
            return name
        roll -= weight
    return NAMES[-1][0]


def event_time(rng, start_ms, step_ms, i):
    t = start_ms + i * step_ms + rng.randrange(-600_000, 600_000)
    if rng.random() < 0.01:
        t -= rng.randrange(3_600_000, 6 * 3_600_000)
    return t


def iso(ms):
    from datetime import datetime, timezone
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def collect(p, name, props, t, mid, identify):
    event = {"partnerId": "shop", "clientId": p["anon"], "sentAt": t, "messageId": mid,
             "event": "custom", "context": {"library": {"name": "wild", "version": "2"}}}
    if identify:
        event["type"] = "identify"
        event["traits"] = {"userId": p["user"], "email": p["email"],
                           "address": {"city": CITIES[sum(map(ord, p["anon"])) % len(CITIES)]}}
    else:
        event["type"] = "track"
        event["properties"] = {"eventName": name, "properties": props}
    return event


def segment(p, name, props, t, mid, identify):
    event = {"messageId": mid, "timestamp": iso(t), "context": {"ip": "198.51.100.4"}}
    if not (identify and p["server_only"]):
        event["anonymousId"] = p["anon"]
    if identify:
        event["type"] = "identify"
        event["userId"] = p["user"]
        event["traits"] = {"email": p["email"], "plan": {"tier": "pro", "seats": 3}}
    else:
        event["type"] = "track"
        event["event"] = name
        event["properties"] = props
    return event


def name_payload(p, name, props, t, mid, identify):
    event = {"name": name, "payload": props, "event_id": mid, "timestamp": t}
    if p["email"]:
        event["email"] = p["email"]
    else:
        event["client_id"] = p["anon"]
    return event


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=["collect", "segment", "name_payload"], required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start-ms", type=int, default=1_793_491_200_000)
    parser.add_argument("--step-ms", type=int, default=4_000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    pool = max(args.events // 15, 10)
    shape = {"collect": collect, "segment": segment, "name_payload": name_payload}[args.shape]
    totals = {"events": 0, "identifies": 0, "names": {}}
    with open(args.out, "w") as out:
        for i in range(args.events):
            p = person(rng, pool)
            identify = p["user"] is not None and rng.random() < 0.08 and args.shape != "name_payload"
            name = None if identify else pick_name(rng)
            props = None if identify else properties(rng, name)
            t = event_time(rng, args.start_ms, args.step_ms, i)
            mid = f"w{args.seed}-{i}"
            out.write(json.dumps(shape(p, name, props, t, mid, identify), ensure_ascii=False))
            out.write("\n")
            totals["events"] += 1
            if identify:
                totals["identifies"] += 1
            else:
                totals["names"][name] = totals["names"].get(name, 0) + 1
    json.dump(totals, sys.stdout)
    print()


if __name__ == "__main__":
    main()
