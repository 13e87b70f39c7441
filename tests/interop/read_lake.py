#!/usr/bin/env python3
"""Interop check: the lake written by `gata demo` is read by another Delta implementation
(Python `deltalake`, delta-rs's Python binding with its own reader), and every table holds the
rows `gata sql` counts, with the Kafka positions recorded as Delta txn actions.

Usage: read_lake.py PATH_TO_GATA_BINARY
"""
import json, socket, subprocess, sys, tempfile

from deltalake import DeltaTable

gata = sys.argv[1]
tables = {"events": "bronze/events", "chat_turns": "silver/chat_turns",
          "preferences": "silver/preferences", "image_text_pairs": "silver/image_text_pairs"}

with tempfile.TemporaryDirectory() as d:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    subprocess.run([gata, "demo", "--once", "--data-dir", d, "--http", f"127.0.0.1:{port}",
                    "--turns", "60", "--images", "12", "--seed", "5"],
                   check=True, stdout=subprocess.DEVNULL, timeout=300)
    passed = failed = 0
    for name, path in tables.items():
        out = subprocess.run([gata, "sql", f"SELECT COUNT(*) AS n FROM {name}", "--data-dir", d, "--format", "json"],
                             check=True, capture_output=True, text=True, timeout=120).stdout
        want = json.loads(out)[0]["n"]
        dt = DeltaTable(f"{d}/lake/{path}")
        got = dt.to_pyarrow_table().num_rows
        if got == want and want > 0:
            passed += 1
            print(f"ok   {name}: python deltalake reads {got} rows at version {dt.version()}")
        else:
            failed += 1
            print(f"FAIL {name}: python deltalake reads {got} rows, gata sql counts {want}")
    dt = DeltaTable(f"{d}/lake/silver/chat_turns")
    positions = [dt.transaction_version(f"kafka:gata.chat_turns.v1:{p}") for p in range(4)]
    if any(v is not None for v in positions):
        passed += 1
        print(f"ok   chat_turns records its Kafka positions as txn actions: {positions}")
    else:
        failed += 1
        print("FAIL chat_turns has no txn positions")
    print(f"interop: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
