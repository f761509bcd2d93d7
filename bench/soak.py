#!/usr/bin/env python3
"""Soak (run by bench/soak): Confab under a steady REGISTER load for a long time, memory over time.

One freshly started release Confab (the same set-up as bench/compare's workload (a)), SIPp
registering the users one after another at a fixed rate — by default 1,250 a second, half of
the clean rate bench/compare measured on this machine — for --minutes. Every --every seconds it
samples the server's PSS and RSS and SIPp's counters (calls done, failed, retransmissions). At
the end it prints the samples, the growth of memory from the first minute to the last, and
writes the samples as CSV into the output directory. Standard library only.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import (  # noqa: E402  (bench/compare.py: server start-up and accounting)
    HOST,
    ROOT,
    Confab,
    die,
    last_stat_row,
    pss_kib,
    write_users_csv,
)


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30, help="how long the load runs")
    p.add_argument("--rate", type=int, default=1250, help="REGISTERs (sign-ins) per second")
    p.add_argument("--users", type=int, default=10000, help="distinct users, signed in in turn")
    p.add_argument("--every", type=int, default=30, help="seconds between samples")
    p.add_argument("--confab", default=os.path.join(ROOT, "target/release/confab"))
    p.add_argument("--out", default=os.path.join(ROOT, "bench/results"), help="output dir")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="confab-soak-")
    users = [f"u{i}" for i in range(args.users)]
    users_csv = write_users_csv(os.path.join(work, "users.csv"), users)
    server = Confab(5080, work, os.path.abspath(args.confab))
    server.start(users)
    seconds = int(args.minutes * 60)
    count = args.rate * seconds
    stat = os.path.join(work, "stat.csv")
    sipp = subprocess.Popen(
        [
            "sipp", f"{HOST}:{server.port}", "-sf", os.path.join(ROOT, "bench/sipp/register.xml"),
            "-inf", users_csv, "-i", HOST, "-t", "u1", "-r", str(args.rate), "-m", str(count),
            "-l", str(args.rate * 2), "-recv_timeout", "4000", "-timeout", f"{seconds + 60}s",
            "-trace_stat", "-stf", stat, "-fd", str(min(args.every, 10)), "-nostdin",
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=work,
    )
    start = time.time()
    samples = []
    print(f"soak: {args.rate} sign-ins/s for {args.minutes:g} min on {HOST}:{server.port}", flush=True)
    print(f"{'min':>6} {'PSS MiB':>8} {'RSS MiB':>8} {'calls':>10} {'failed':>7} {'retrans':>8}")
    while True:
        done = sipp.poll() is not None
        row = last_stat_row(stat) or {}
        s = {
            "minute": round((time.time() - start) / 60, 2),
            "pss_mib": round(pss_kib(server.pids()) / 1024, 1),
            "rss_mib": round(rss_kib(server.proc.pid) / 1024, 1),
            "calls": int(row.get("TotalCallCreated", 0) or 0),
            "failed": int(row.get("FailedCall(C)", 0) or 0),
            "retrans": int(row.get("Retransmissions(C)", 0) or 0),
        }
        samples.append(s)
        print(
            f"{s['minute']:>6} {s['pss_mib']:>8} {s['rss_mib']:>8} {s['calls']:>10} "
            f"{s['failed']:>7} {s['retrans']:>8}",
            flush=True,
        )
        if done:
            break
        time.sleep(args.every)
    server.stop()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, time.strftime("soak-%Y%m%d-%H%M%S.csv"))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(samples[0]))
        w.writeheader()
        w.writerows(samples)
    first = next((s for s in samples if s["minute"] >= 1), samples[0])
    last = samples[-1]
    print(
        f"\nPSS after the first minute {first['pss_mib']} MiB, at the end {last['pss_mib']} MiB "
        f"({last['pss_mib'] - first['pss_mib']:+.1f}); {last['calls']} sign-ins, "
        f"{last['failed']} failed, {last['retrans']} retransmissions. CSV: {path}"
    )
    if sipp.returncode not in (0, None):
        die(f"SIPp reported failed calls (exit {sipp.returncode}); see the CSV")


if __name__ == "__main__":
    main()
