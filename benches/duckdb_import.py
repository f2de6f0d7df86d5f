"""The DuckDB side of `cargo bench --bench import`: the same NDJSON file
through DuckDB's read_json into Parquet (zstd), timed end to end.

    python3 benches/duckdb_import.py target/bench-data/events-1000000.ndjson
"""
import sys
import tempfile
import time

import duckdb

path = sys.argv[1]
with tempfile.TemporaryDirectory() as out:
    con = duckdb.connect()
    started = time.perf_counter()
    con.execute(
        f"COPY (SELECT * FROM read_json('{path}', format='newline_delimited')) "
        f"TO '{out}/events.parquet' (FORMAT parquet, COMPRESSION zstd)"
    )
    seconds = time.perf_counter() - started
    rows = con.execute(f"SELECT count(*) FROM '{out}/events.parquet'").fetchone()[0]
print(f"duckdb {duckdb.__version__}: {rows} events in {seconds:.2f}s = {rows / seconds:.0f} events/s")
