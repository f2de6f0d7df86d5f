"""The DuckDB side of `cargo bench --bench deliver`: the same match set as
the bench's trigger, from the same Parquet files tripwire reads, written as
the same NDJSON lines tripwire's `file` action writes, with COPY ... TO.

What is compared: tripwire's whole `tripwire run` process (trigger SQL,
contacts, planning, the ledger commit, then claiming, writing and
recording every delivery) against DuckDB computing the rows of the window
(`commit_version` in (FROM, TO]), one line per row with the same fields
(`delivery_id` an md5 of the event id, `workspace`, `flow`, `trigger`,
`run_id`, `variant`, `branch`, `contact` {email, user_id, client_id},
`data` {name, cart_value}) and writing them to one file. DuckDB keeps no
ledger, no attempts history and no claims: it is the floor for "the
lines in a file".

Timed per run: a fresh connection, the view and the COPY (the Delta log
is read once, before timing). Prints `median_seconds=S rows=N`.

    python3 benches/duckdb_deliver.py --table STORE/shop/events --from -1 --to 3 \\
        --out /tmp/lines.ndjson --runs 3

Exits with status 3 when duckdb or deltalake cannot be imported.
"""
import argparse
import statistics
import sys
import time

try:
    import duckdb
    from deltalake import DeltaTable
except ImportError as e:
    print(f"{e} (pip install duckdb deltalake)", file=sys.stderr)
    sys.exit(3)


def files(table, version):
    return [u.removeprefix("file://") for u in DeltaTable(table, version=version).file_uris()]


def copy_lines(event_files, first, last, out):
    con = duckdb.connect()
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in event_files)
    con.execute(
        f"CREATE VIEW new_events AS SELECT * FROM read_parquet([{listed}]) "
        f"WHERE commit_version > {first} AND commit_version <= {last}"
    )
    target = out.replace("'", "''")
    con.execute(
        f"""COPY (
          SELECT md5('bench|' || event_id) AS delivery_id, 'shop' AS workspace,
                 'bench' AS flow, 'bench_lines' AS trigger, 'duckdb' AS run_id,
                 NULL AS variant, 0 AS branch,
                 {{'email': email, 'user_id': user_id, 'client_id': client_id}} AS contact,
                 {{'name': coalesce(event_name, type),
                   'cart_value': TRY_CAST(json_extract_string(properties, '$.cart_value') AS DOUBLE)}} AS data
          FROM new_events
        ) TO '{target}' (FORMAT JSON)"""
    )
    con.close()


def count_lines(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--table", required=True)
    parser.add_argument("--from", dest="first", type=int, required=True, help="the cursor (exclusive)")
    parser.add_argument("--to", dest="last", type=int, required=True, help="the watermark")
    parser.add_argument("--out", required=True)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    event_files = files(args.table, args.last)
    seconds, rows = [], 0
    for _ in range(args.runs):
        started = time.perf_counter()
        copy_lines(event_files, args.first, args.last, args.out)
        seconds.append(time.perf_counter() - started)
        rows = count_lines(args.out)
    print(f"median_seconds={statistics.median(seconds):.4f} rows={rows}")


if __name__ == "__main__":
    main()
