"""The DuckDB side of `cargo bench --bench trigger`: a trigger's SQL over the
same Parquet files tripwire reads, timed in DuckDB.

- `new_events`: the rows of the table at version TO whose `commit_version`
  stamp is in (FROM, TO], as tripwire reads a window;
- `events`: every file of the table at version TO (python `deltalake`);
- `identities`: tripwire's view (src/sql/identity.rs): the latest identify
  per client_id with sent_at in (NOW - TTL, NOW];
- `json_get_float`: a macro over DuckDB's json_extract_string.

Timed per run: a fresh connection, the views, and every query's full result
(`--sql` repeats: a tick's triggers run one after another in one connection;
the Delta log is read once, before timing). Prints `median_seconds=S`.

    python3 benches/duckdb_trigger.py --table STORE/shop/events --from 9 --to 11 \\
        --now 2026-11-05T15:06:40Z --ttl-seconds 604800 --sql TRIGGER.sql --runs 5

With `--paired`, the script times one run for each line read from stdin
and prints `seconds=S` after it, so the bench can time DuckDB right after
each of tripwire's runs: the pair sees the same moment of a machine whose
speed drifts by a fifth over minutes.

Exits with status 3 when duckdb or deltalake cannot be imported.
"""
import argparse
import statistics
import sys
import time
from datetime import datetime, timedelta

try:
    import duckdb
    from deltalake import DeltaTable
except ImportError as e:
    print(f"{e} (pip install duckdb deltalake)", file=sys.stderr)
    sys.exit(3)


def all_files(table, version):
    return [u.removeprefix("file://") for u in DeltaTable(table, version=version).file_uris()]


def parquet(files):
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return f"read_parquet([{listed}])"


def setup(con, first, last, event_files, now, ttl_seconds):
    cutoff = now - timedelta(seconds=ttl_seconds)
    stamp = lambda t: t.strftime("%Y-%m-%d %H:%M:%S.%f+00")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE VIEW events AS SELECT * FROM {parquet(event_files)}")
    con.execute(
        f"CREATE VIEW new_events AS SELECT * FROM events "
        f"WHERE commit_version > {first} AND commit_version <= {last}"
    )
    con.execute(
        f"""CREATE VIEW identities AS
        SELECT client_id, user_id, email, traits, identified_at FROM (
          SELECT client_id, user_id, email, traits, sent_at AS identified_at,
                 row_number() OVER (PARTITION BY client_id ORDER BY sent_at DESC, seq DESC) AS latest
          FROM events
          WHERE type = 'identify' AND client_id IS NOT NULL
            AND sent_at > TIMESTAMPTZ '{stamp(cutoff)}' AND sent_at <= TIMESTAMPTZ '{stamp(now)}'
        ) WHERE latest = 1"""
    )
    con.execute(
        "CREATE MACRO json_get_float(j, k) AS "
        "TRY_CAST(json_extract_string(j, '$.' || k) AS DOUBLE)"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--table", required=True)
    parser.add_argument("--from", dest="first", type=int, required=True, help="the cursor (exclusive)")
    parser.add_argument("--to", dest="last", type=int, required=True, help="the watermark")
    parser.add_argument("--now", required=True)
    parser.add_argument("--ttl-seconds", type=int, default=7 * 86400)
    parser.add_argument("--sql", required=True, action="append",
                        help="a trigger file; repeat it to run several queries per timed run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--paired", action="store_true",
                        help="one timed run per line of stdin, each printed as seconds=S")
    args = parser.parse_args()

    now = datetime.fromisoformat(args.now.replace("Z", "+00:00"))
    queries = []
    for path in args.sql:
        with open(path) as f:
            queries.append(f.read())
    event_files = all_files(args.table, args.last)

    def timed_run():
        started = time.perf_counter()
        con = duckdb.connect()
        setup(con, args.first, args.last, event_files, now, args.ttl_seconds)
        rows = sum(len(con.execute(sql).fetchall()) for sql in queries)
        seconds = time.perf_counter() - started
        con.close()
        return seconds, rows

    if args.paired:
        print(f"duckdb {duckdb.__version__}: {len(event_files)} table files", flush=True)
        for _ in sys.stdin:
            seconds, rows = timed_run()
            print(f"seconds={seconds:.6f} rows={rows}", flush=True)
        return

    times = []
    rows = 0
    # The first run warms the page cache and is not counted.
    for _ in range(args.runs + 1):
        seconds, rows = timed_run()
        times.append(seconds)
    median = statistics.median(times[1:])
    print(
        f"duckdb {duckdb.__version__}: {len(queries)} queries, {rows} rows over {len(event_files)} table files, "
        f"median {median:.3f}s of {args.runs}"
    )
    print(f"median_seconds={median:.6f}")


if __name__ == "__main__":
    main()
