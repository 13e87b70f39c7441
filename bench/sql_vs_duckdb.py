#!/usr/bin/env python3
"""SQL benchmark: gata's query service against DuckDB on the same Parquet files, in one run.

Generates a scores table (10 M rows by default) and a chat-turns table (5 M rows, with prompts) as Delta
tables under a lake directory (Python `deltalake`), starts `gata serve --roles query` on that
lake, and times a query set (filters, aggregations, a join, top-k, distinct, time buckets, a
percentile, a window function, a text search over prompts)
through gata's HTTP API (answers as Arrow IPC) and through DuckDB reading the tables' Parquet
files. Both engines get the same number of threads. Each query runs once to warm up, then
`--repeat` times; the best time counts. Answers are compared, so a fast wrong answer shows.

    pip install duckdb deltalake pyarrow numpy
    python3 bench/sql_vs_duckdb.py [--scores 10000000] [--turns 5000000] [--threads 2] [--gata target/release/gata]

Prints one row per query: gata ms, DuckDB ms, and gata/DuckDB (below 1: gata is faster).
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
from deltalake import write_deltalake

QUERIES = [
    ("filter + count", "SELECT COUNT(*) AS n FROM scores WHERE verdict = 'accept' AND score > 0.5"),
    (
        "group by 2 keys",
        "SELECT subject_kind, verdict, COUNT(*) AS n, AVG(score) AS mean FROM scores GROUP BY 1, 2 ORDER BY 1, 2",
    ),
    (
        "group by contributor, top 10",
        "SELECT contributor_id, COUNT(*) AS n, AVG(score) AS mean FROM scores GROUP BY 1 ORDER BY n DESC, contributor_id LIMIT 10",
    ),
    ("top-k by score", "SELECT subject_id, score FROM scores ORDER BY score DESC, subject_id LIMIT 10"),
    (
        "join scores x turns",
        "SELECT t.model, COUNT(*) AS n, AVG(s.score) AS mean FROM scores s JOIN turns t ON t.event_id = s.subject_id "
        "WHERE s.subject_kind = 'chat_turn' GROUP BY 1 ORDER BY 1",
    ),
    ("count distinct", "SELECT COUNT(DISTINCT contributor_id) AS n FROM turns"),
    (
        "time buckets",
        "SELECT date_trunc('month', occurred_at) AS month, COUNT(*) AS n, MAX(latency_ms) AS slowest FROM turns "
        "WHERE occurred_at >= TIMESTAMP '2026-03-01 00:00:00' GROUP BY 1 ORDER BY 1",
    ),
    ("string filter", "SELECT COUNT(*) AS n FROM turns WHERE model LIKE 'gpt%' AND latency_ms < 1000"),
    (
        "percentile",
        "SELECT model, percentile_cont(0.9) WITHIN GROUP (ORDER BY latency_ms) AS p90 FROM turns GROUP BY 1 ORDER BY 1",
    ),
    (
        "window: latest turn each",
        "SELECT model, COUNT(*) AS n FROM (SELECT model, ROW_NUMBER() OVER (PARTITION BY contributor_id "
        "ORDER BY occurred_at DESC, event_id) AS rn FROM turns) WHERE rn = 1 GROUP BY 1 ORDER BY 1",
    ),
    (
        "prompt search (ILIKE)",
        "SELECT model, COUNT(*) AS n FROM turns WHERE prompt ILIKE '%quantum%' GROUP BY 1 ORDER BY 1",
    ),
]

MODELS = np.array(["gpt-4o", "gpt-4o-mini", "claude-3.5", "deepseek-v3", "llama-3", "qwen-2.5"])
KINDS = np.array(["chat_turn", "preference", "image_text_pair"])
# Prompt words: a fixed vocabulary, so one word ('quantum') is in about 12% of prompts.
WORDS = (
    "how what why when explain write summarize compare translate list describe the a of to in for on with "
    "and or not is are was be can should would could my your our their this that these those code python rust "
    "sql data model image caption cat dog city river mountain history physics quantum chemistry biology music "
    "poem story email letter recipe bread soup garden travel budget market stock price energy solar wind climate "
    "health sleep running coffee tea book film game chess math proof theorem graph network server database query "
    "error bug test release deploy kubernetes docker cloud storage memory cpu gpu training dataset label quality"
).split()


def ids(prefix, values):
    return pc.binary_join_element_wise(prefix, pa.array(values).cast(pa.string()), "")


def prompts(rng, n):
    """`n` prompts of 5 to 24 words drawn from WORDS."""
    lengths = rng.integers(5, 25, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    words = pa.array(WORDS).take(pa.array(rng.integers(0, len(WORDS), int(offsets[-1]))))
    return pc.binary_join(pa.LargeListArray.from_arrays(pa.array(offsets), words), " ")


def generate(lake, n_scores, n_turns, seed=7):
    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-01-01T00:00:00", "us")
    year_us = 365 * 24 * 3600 * 1_000_000
    turn_ids = np.arange(n_turns)
    turns = pa.table(
        {
            "event_id": ids("t_", turn_ids),
            "contributor_id": ids("c_", rng.integers(0, 50_000, n_turns)),
            "model": pa.array(MODELS[rng.integers(0, len(MODELS), n_turns)]),
            "latency_ms": pa.array(rng.integers(200, 5000, n_turns), pa.int64()),
            "prompt": prompts(rng, n_turns),
            "occurred_at": pa.array(start + rng.integers(0, year_us, n_turns).astype("timedelta64[us]"), pa.timestamp("us", "UTC")),
        }
    )
    kinds = rng.choice(3, n_scores, p=[0.5, 0.3, 0.2])
    subject = np.where(kinds == 0, rng.integers(0, n_turns, n_scores), np.arange(n_scores) + n_turns)
    score = np.clip(rng.normal(0.3, 0.4, n_scores), -1, 1)
    scores = pa.table(
        {
            "subject_id": ids("t_", subject),
            "contributor_id": ids("c_", rng.integers(0, 50_000, n_scores)),
            "subject_kind": pa.array(KINDS[kinds]),
            "score": pa.array(score),
            "verdict": pa.array(np.where(score > 0.2, "accept", "reject")),
            "scored_at": pa.array(start + rng.integers(0, year_us, n_scores).astype("timedelta64[us]"), pa.timestamp("us", "UTC")),
        }
    )
    for name, table in [("scores", scores), ("turns", turns)]:
        write_deltalake(os.path.join(lake, "bench", name), table, mode="overwrite")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gata_query(base, sql):
    req = urllib.request.Request(
        f"{base}/v1/sql",
        data=json.dumps({"sql": sql}).encode(),
        headers={"content-type": "application/json", "accept": "application/vnd.apache.arrow.stream"},
    )
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            return ipc.open_stream(resp.read()).read_all()
    except urllib.error.HTTPError as e:
        sys.exit(f"gata refused {sql!r}: {e.code} {e.read().decode()}")


def duck_query(db, sql):
    result = db.sql(sql)
    # DuckDB 2 names it to_arrow_table; 1.x arrow.
    return result.to_arrow_table() if hasattr(result, "to_arrow_table") else result.arrow()


def best_of(run, repeat):
    run()  # warm-up: caches, file metadata
    best, answer = None, None
    for _ in range(repeat):
        t = time.perf_counter()
        answer = run()
        took = time.perf_counter() - t
        best = took if best is None else min(best, took)
    return best, answer


def normalized(table):
    rows = []
    for row in table.to_pylist():
        cells = []
        for v in row.values():
            if isinstance(v, float):
                v = round(v, 6)
            elif hasattr(v, "isoformat"):
                v = v.isoformat()[:19]
            cells.append(v)
        rows.append(tuple(cells))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scores", type=int, default=10_000_000)
    ap.add_argument("--turns", type=int, default=5_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--gata", default="target/release/gata")
    ap.add_argument("--keep", help="directory to keep the generated lake in (reused when present)")
    args = ap.parse_args()

    if not os.path.exists(args.gata):
        subprocess.run(["cargo", "build", "--release", "--bin", "gata"], check=True)
    work = args.keep or tempfile.mkdtemp(prefix="gata-sql-bench-")
    lake = os.path.join(work, "lake")
    if not os.path.exists(os.path.join(lake, "bench", "turns", "_delta_log")):
        t = time.perf_counter()
        generate(lake, args.scores, args.turns)
        print(f"generated {args.scores:,} scores and {args.turns:,} turns in {time.perf_counter() - t:.0f} s", file=sys.stderr)

    port = free_port()
    env = dict(
        os.environ,
        GATA__QUERY__EXECUTOR_THREADS=str(args.threads),
        GATA__QUERY__TIMEOUT="600s",
        GATA__QUERY__MEMORY_LIMIT_BYTES=str(8 << 30),
        GATA__QUERY__FLIGHT_ADDR="127.0.0.1:0",
        GATA__HTTP__REQUEST_TIMEOUT="600s",
        GATA__MAINTENANCE__ENABLED="false",
    )
    log = open(os.path.join(work, "serve.log"), "w")
    server = subprocess.Popen(
        [args.gata, "serve", "--roles", "query", "--data-dir", work, "--http", f"127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        db = duckdb.connect()
        db.execute(f"SET threads = {args.threads}")
        for name in ["scores", "turns"]:
            files = os.path.join(lake, "bench", name, "*.parquet")
            db.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{files}')")

        print(f"{args.scores:,} scores, {args.turns:,} turns; {args.threads} threads each; best of {args.repeat}")
        print(f"| {'query':<30} | {'gata ms':>9} | {'DuckDB ms':>9} | {'gata/DuckDB':>11} | same answer |")
        print(f"|{'-' * 32}|{'-' * 11}|{'-' * 11}|{'-' * 13}|-------------|")
        ratios = []
        for name, sql in QUERIES:
            g, g_answer = best_of(lambda: gata_query(base, sql), args.repeat)
            d, d_answer = best_of(lambda: duck_query(db, sql), args.repeat)
            same = normalized(g_answer) == normalized(d_answer)
            ratios.append(g / d)
            print(f"| {name:<30} | {g * 1000:>9.1f} | {d * 1000:>9.1f} | {g / d:>11.2f} | {'yes' if same else 'NO'}         |")
        geo = float(np.exp(np.mean(np.log(ratios))))
        print(f"geometric mean of gata/DuckDB: {geo:.2f}")
    finally:
        server.terminate()
        server.wait()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
