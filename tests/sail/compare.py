#!/usr/bin/env python3
"""Runs the analysts' queries on Sail (a Spark Connect server built on DataFusion, in local
cluster mode: a driver and workers exchanging shuffled data over gRPC, as on Kubernetes) over
the very Delta tables a running gata serves, and compares every answer with gata's.

Usage: python3 tests/sail/compare.py http://127.0.0.1:8080 [--token T] [--workers N]

Tables are found through gata's `GET /v1/tables` (their Delta locations). Each query is
written once in the SQL both engines take; answers are compared row by row, numbers within a
relative 1e-9. Exit status 0 only when every answer matches. Needs
`pip install pysail==0.7.2 pyspark-client==4.1.1`.
"""

import argparse
import json
import math
import os
import sys
import time
import urllib.request

QUERIES = [
    ("filter + count", "SELECT COUNT(*) AS n FROM quality_scores WHERE verdict = 'accept' AND score > 0.5"),
    (
        "group by 2 keys",
        "SELECT subject_kind, verdict, COUNT(*) AS n, AVG(score) AS mean FROM quality_scores "
        "GROUP BY subject_kind, verdict ORDER BY subject_kind, verdict",
    ),
    (
        "group by contributor, top 10",
        "SELECT contributor_id, COUNT(*) AS n, AVG(score) AS mean FROM quality_scores "
        "GROUP BY contributor_id ORDER BY n DESC, contributor_id LIMIT 10",
    ),
    (
        "top-k by score",
        "SELECT subject_event_id, scorer_version, score FROM quality_scores "
        "ORDER BY score DESC, subject_event_id, scorer_version LIMIT 10",
    ),
    (
        "join scores x turns",
        "SELECT t.contributor_id, COUNT(*) AS n, AVG(s.score) AS mean FROM quality_scores s "
        "JOIN chat_turns t ON t.event_id = s.subject_event_id WHERE s.subject_kind = 'chat_turn' "
        "GROUP BY t.contributor_id ORDER BY t.contributor_id",
    ),
    ("count distinct", "SELECT COUNT(DISTINCT contributor_id) AS n FROM chat_turns"),
    (
        "time buckets",
        "SELECT date_part('hour', occurred_at) AS hour, COUNT(*) AS n FROM chat_turns "
        "GROUP BY date_part('hour', occurred_at) ORDER BY hour",
    ),
    ("string filter", "SELECT COUNT(*) AS n FROM chat_turns WHERE prompt LIKE 'How%' AND session_id IS NOT NULL"),
    (
        "percentile",
        "SELECT verdict, percentile_cont(0.9) WITHIN GROUP (ORDER BY score) AS p90 FROM quality_scores "
        "GROUP BY verdict ORDER BY verdict",
    ),
    (
        "window: latest turn each",
        "SELECT COUNT(*) AS n, COUNT(DISTINCT contributor_id) AS contributors FROM (SELECT contributor_id, "
        "ROW_NUMBER() OVER (PARTITION BY contributor_id ORDER BY occurred_at DESC, event_id) AS rn "
        "FROM chat_turns) latest WHERE rn = 1",
    ),
    (
        "prompt search (ILIKE)",
        "SELECT COUNT(*) AS n FROM chat_turns WHERE prompt ILIKE '%the%'",
    ),
    (
        "preferences per turn",
        "SELECT p.all_bad, COUNT(*) AS n FROM preferences p JOIN chat_turns t ON t.turn_id = p.turn_id "
        "AND t.contributor_id = p.contributor_id GROUP BY p.all_bad ORDER BY p.all_bad",
    ),
]

TABLES = ["quality_scores", "chat_turns", "preferences"]


def gata(base, token, path, body=None):
    headers = {"accept": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        headers["content-type"] = "application/json"
        data = json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.load(resp)


def same(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a == b or math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("--token")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    # Local cluster mode: a driver and workers, shuffles over gRPC.
    os.environ.setdefault("SAIL_MODE", "local-cluster")
    os.environ.setdefault("SAIL_CLUSTER__WORKER_INITIAL_COUNT", str(args.workers))
    from pysail.spark import SparkConnectServer
    from pyspark.sql import SparkSession

    tables = {t["name"]: t["location"] for t in gata(args.base, args.token, "/v1/tables")["tables"]}
    server = SparkConnectServer(ip="127.0.0.1", port=0)
    server.start(background=True)
    host, port = server.listening_address
    spark = SparkSession.builder.remote(f"sc://{host}:{port}").getOrCreate()
    for name in TABLES:
        spark.read.format("delta").load(tables[name]).createOrReplaceTempView(name)

    failed = 0
    print(f"| query | rows | gata ms | Sail ({os.environ['SAIL_MODE']}, {args.workers} workers) ms | same answer |")
    print("|---|---:|---:|---:|---|")
    for name, sql in QUERIES:
        started = time.perf_counter()
        answer = gata(args.base, args.token, "/v1/sql", {"sql": sql})
        gata_ms = (time.perf_counter() - started) * 1000
        columns = [c["name"] for c in answer["columns"]]
        ours = [[row[c] for c in columns] for row in answer["rows"]]
        started = time.perf_counter()
        theirs = [list(r) for r in spark.sql(sql).collect()]
        sail_ms = (time.perf_counter() - started) * 1000
        ok = len(ours) == len(theirs) and all(
            len(a) == len(b) and all(same(x, y) for x, y in zip(a, b)) for a, b in zip(ours, theirs)
        )
        failed += not ok
        print(f"| {name} | {len(ours)} | {gata_ms:.1f} | {sail_ms:.1f} | {'yes' if ok else 'NO'} |")
        if not ok:
            print(f"  gata: {ours[:5]}\n  sail: {theirs[:5]}", file=sys.stderr)
        if not ours:
            print(f"  {name}: no rows to compare", file=sys.stderr)
            failed += 1
    spark.stop()
    server.stop()
    print(f"{len(QUERIES) - failed} of {len(QUERIES)} answers match")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
