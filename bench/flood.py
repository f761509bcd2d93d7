#!/usr/bin/env python3
"""Legitimate sign-ins during a flood, Confab (1 and 2 shards) and Kamailio side by side (run
by bench/flood, inside a private network namespace).

For every server, number of flooding addresses and multiple of --capacity, on a freshly
started server: the flood generator (bench/harness `flood`: 40% REGISTER and 30% INVITE
without credentials, 30% junk, in bursts) runs for the whole step while SIPp signs in
--legit-rate users a second (each once, digest, bench/sipp/register.xml). Reported per step:
the rate the generator reached (it shares the machine with the server, so a step may fall
short of its nominal rate), the share of legitimate sign-ins that succeeded, their p99 time, server CPU seconds, memory
(PSS) before the flood, its peak and at the end, what the flood generator sent and received (datagrams
out per datagram in: 1.0 means one answer each, more is amplification). Every load is bounded
by --seconds.
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (the server classes, SIPp load and process accounting)

HOST = compare.HOST


def one_step(make_server, flood_bin, sources, rate, args, users, users_csv, work):
    server = make_server()
    server.start(users)
    try:
        time.sleep(0.5)
        cpu0 = server.cpu()
        before_kib = compare.pss_kib(server.pids())
        flood = subprocess.Popen(
            [flood_bin, f"{HOST}:{server.port}", str(rate), str(args.seconds), str(sources)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        time.sleep(0.5)
        legit_count = args.legit_rate * (args.seconds - 2)
        r = compare.sipp_load(server, "a", args.legit_rate, legit_count, users_csv, work)
        out, _ = flood.communicate(timeout=args.seconds + 30)
        cpu = server.cpu() - cpu0
        end_kib = compare.pss_kib(server.pids())
        counts = dict(kv.split("=") for kv in out.split() if "=" in kv)
        sent = int(counts.get("sent", 0))
        received = int(counts.get("received", 0))
        return {
            "server": server.name,
            "sources": sources,
            "rate": rate,
            "legit_ok_pct": 100.0 * r.calls / max(legit_count, 1),
            "legit_p99_ms": compare.percentile(r.rtts, 0.99),
            "cpu_s": cpu,
            "before_mib": before_kib / 1024,
            "peak_mib": server.peak_kib / 1024,
            "end_mib": end_kib / 1024,
            "flood_sent": sent,
            "sent_per_s": sent / args.seconds,
            "out_per_in": received / max(sent, 1),
        }
    finally:
        server.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--confab", required=True)
    p.add_argument("--flood", required=True, help="the flood generator binary")
    p.add_argument("--shards", default="1,2")
    p.add_argument("--capacity", type=int, default=28000,
                   help="messages a second taken as 1x (default: what one Confab core's digest REGISTERs measured)")
    p.add_argument("--multiples", default="1,2,5,10")
    p.add_argument("--sources", default="4,1000")
    p.add_argument("--legit-rate", type=int, default=50)
    p.add_argument("--seconds", type=int, default=12)
    p.add_argument("--no-kamailio", action="store_true")
    args = p.parse_args()
    work = compare.tempfile.mkdtemp(prefix="confab-flood-")
    users = [f"legit{i}" for i in range(args.legit_rate * args.seconds + 10)]
    users_csv = compare.write_users_csv(os.path.join(work, "users.csv"), users)
    makers = [
        (lambda n=n: compare.Confab(5080, work, args.confab, n))
        for n in (int(s) for s in args.shards.split(","))
    ]
    if not args.no_kamailio:
        makers.append(lambda: compare.Kamailio(5100, work))
    rows = []
    head = f"{'server':10} {'sources':>7} {'rate/s':>7} {'sent/s':>7} {'legit ok':>8} {'p99 ms':>8} {'cpu s':>6} {'pre MiB':>7} {'peak MiB':>8} {'end MiB':>7} {'out/in':>6}"
    print(head, flush=True)
    for sources in (int(s) for s in args.sources.split(",")):
        for mult in (int(m) for m in args.multiples.split(",")):
            for make in makers:
                row = one_step(make, args.flood, sources, args.capacity * mult, args, users, users_csv, work)
                row["multiple"] = mult
                rows.append(row)
                print(
                    f"{row['server']:10} {sources:>7} {row['rate']:>7} {row['sent_per_s']:>7.0f} {row['legit_ok_pct']:>7.1f}% "
                    f"{row['legit_p99_ms']:>8.1f} {row['cpu_s']:>6.1f} {row['before_mib']:>7.1f} {row['peak_mib']:>8.1f} "
                    f"{row['end_mib']:>7.1f} {row['out_per_in']:>6.2f}",
                    flush=True,
                )
    out_dir = os.path.join(compare.ROOT, "bench/results")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"flood-{time.strftime('%Y%m%d-%H%M%S')}.csv")
    with open(path, "w") as f:
        keys = list(rows[0].keys())
        f.write(",".join(keys) + "\n")
        for r in rows:
            f.write(",".join(str(r[k]) for k in keys) + "\n")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
