#!/usr/bin/env python3
"""Search time over a generated archive (run by bench/archive).

Generates --messages messages among 10,000 users over 60 days into an SQLite archive (and,
with --postgres URL, into a PostgreSQL one) with archive-gen, then times `confab archive
search` and `confab archive export` as an administrator runs them: one user's messages on one
day, one user with another over the whole period, one user's with a word over a week, and an
export of one user's month. Each query runs three times; the best is shown (the first warms
the page cache). Standard library only.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone


def timed(cmd):
    best, out = None, ""
    for _ in range(3):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(f"archive_search: {' '.join(cmd)} failed:\n{r.stderr}")
        out = r.stdout
        best = dt if best is None else min(best, dt)
    return best, out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--confab", required=True)
    p.add_argument("--generate", required=True, help="the archive-gen binary")
    p.add_argument("--messages", type=int, default=10_000_000)
    p.add_argument("--postgres", help="also a PostgreSQL archive at this URL (its tables are made there)")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="confab-archive-bench-")
    targets = [("sqlite", os.path.join(work, "archive.db"))]
    if args.postgres:
        targets.append(("postgres", args.postgres))
    today = datetime.now(timezone.utc).date()
    day = (today - timedelta(days=10)).isoformat()
    week_from = (today - timedelta(days=20)).isoformat()
    week_to = (today - timedelta(days=14)).isoformat()
    month_from = (today - timedelta(days=40)).isoformat()
    month_to = (today - timedelta(days=10)).isoformat()
    rows = []
    data = os.path.join(work, "data")
    os.makedirs(data)
    # a deployment database for the CLI's policies (the archive is separate)
    open(os.path.join(data, "confab.db"), "w").close()
    for name, spec in targets:
        t0 = time.perf_counter()
        subprocess.run([args.generate, spec, str(args.messages)], check=True)
        gen = time.perf_counter() - t0
        size = os.path.getsize(spec) / 2**20 if name == "sqlite" else 0
        base = [args.confab, "archive"]
        db = ["--data-dir", data, "--archive-database", spec]
        # someone u17 wrote with: the "with" search has something to find
        first = subprocess.run(base + ["search", "--user", "u17@example.com", "--limit", "1"] + db,
                               check=True, capture_output=True, text=True).stdout  # fmt: skip
        parties = first.split(": ")[0].split()[-3:]
        other = next((a for a in parties if a.startswith("u") and a != "u17@example.com"),
                     "u4242@example.com")  # fmt: skip
        queries = [
            ("one user, one day", base + ["search", "--user", "u17@example.com", "--from", day, "--to", day, "--limit", "100000"] + db),
            ("one user with another, 60 days", base + ["search", "--user", "u17@example.com", "--with", other, "--limit", "100000"] + db),
            ("one user, a word, one week", base + ["search", "--user", "u17@example.com", "--text", "invoice", "--from", week_from, "--to", week_to, "--limit", "100000"] + db),
        ]
        for label, cmd in queries:
            t, out = timed(cmd)
            rows.append((name, label, len(out.splitlines()), t))
        export = os.path.join(work, f"export-{name}.jsonl")
        cmd = base + ["export", "--user", "u17@example.com", "--from", month_from, "--to", month_to, "--output", export] + db
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        t = time.perf_counter() - t0
        rows.append((name, "export one user's month (jsonl)", sum(1 for _ in open(export)), t))
        print(f"{name}: {args.messages:,} messages generated in {gen:.0f} s" + (f", {size:,.0f} MiB" if size else ""))
    print()
    print(f"{'database':<10} {'search':<34} {'results':>8} {'seconds':>8}")
    for name, label, n, t in rows:
        print(f"{name:<10} {label:<34} {n:>8} {t:>8.3f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
