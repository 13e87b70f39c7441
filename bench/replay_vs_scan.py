#!/usr/bin/env python3
"""Replay throughput against its ceiling, side by side in one run.

Fills a lake with `gata demo --once` (a seeded workload through the public API), then times
  1. `gata replay --projection scores`: read bronze in receipt order, re-score every chat turn
     and preference, fold every recorded epoch, compare with the record;
  2. a plain Parquet scan of the same bronze files (pyarrow, all columns): the ceiling.
Prints records/s of each and their ratio (best of --runs).

    python3 bench/replay_vs_scan.py target/release/gata --turns 20000
"""
import argparse, glob, os, re, subprocess, sys, tempfile, time

import pyarrow.parquet as pq


def best(runs, fn):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gata")
    ap.add_argument("--turns", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix="gata-replay-bench-")
    env = dict(os.environ)
    print(f"filling {data} with {a.turns} turns ...", file=sys.stderr)
    subprocess.run([a.gata, "demo", "--once", "--turns", str(a.turns), "--images", "0", "--data-dir", data],
                   check=True, env=env, stdout=subprocess.DEVNULL)

    def replay():
        p = subprocess.run([a.gata, "replay", "--projection", "scores", "--data-dir", data],
                           capture_output=True, text=True, env=env)
        if p.returncode not in (0, 1):
            sys.exit(p.stderr)
        return int(re.search(r"replayed (\d+) log records", p.stdout).group(1))

    files = glob.glob(os.path.join(data, "lake", "bronze", "events", "**", "*.parquet"), recursive=True)

    def scan():
        return sum(pq.read_table(f).num_rows for f in files)

    t_replay, n_replay = best(a.runs, replay)
    t_scan, n_scan = best(a.runs, scan)
    print(f"{'what':<40} {'records':>10} {'seconds':>9} {'records/s':>12}")
    print(f"{'gata replay (re-score + fold + diff)':<40} {n_replay:>10} {t_replay:>9.2f} {n_replay / t_replay:>12.0f}")
    print(f"{'Parquet scan of bronze (pyarrow)':<40} {n_scan:>10} {t_scan:>9.2f} {n_scan / t_scan:>12.0f}")
    print(f"replay / scan throughput ratio: {(n_replay / t_replay) / (n_scan / t_scan):.3f}")


if __name__ == "__main__":
    main()
