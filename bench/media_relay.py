"""bench/media-relay: see that script for what it measures. Runs inside a private network
namespace: a Front End (release, SQLite) at 127.0.0.12 and an Edge at 127.0.0.20 whose A/V
service is 203.0.113.11 (added to the loopback), coturn started by the Edge."""

import argparse
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from queue_music import cpu_seconds, rss_kib, wait_for  # noqa: E402  (the same process readings)

AV = "203.0.113.11"
PORT = 5330

TOPOLOGY = f"""[deployment]
name = "bench"
[[site]]
name = "hq"
[[domain]]
name = "example.com"
sign_in = ["pool.example.com"]
[[pool]]
fqdn = "pool.example.com"
site = "hq"
sip_port = {PORT}
tls_port = {PORT + 1}
[[pool.server]]
fqdn = "fe01.example.com"
address = "127.0.0.12"
[[edge]]
fqdn = "edgepool.example.com"
site = "hq"
next_hop = "pool.example.com"
access = {{ fqdn = "access.example.com", address = "127.0.0.21", port = 5340 }}
av = {{ fqdn = "av.example.com", address = "{AV}" }}
internal_port = {PORT + 1}
federation_port = 5340
[[edge.server]]
fqdn = "edge01.example.com"
address = "127.0.0.20"
"""


def start(confab, data, log, *args):
    return subprocess.Popen(
        [confab, "up", "--data-dir", data, "--sip-port", str(PORT), *args],
        stdout=open(log, "w"), stderr=subprocess.STDOUT,
    )


def credentials(secrets_db, lifetime=8 * 3600):
    """TURN REST credentials made with the relay's secret (the stream runs need many; the
    credential service itself is measured with SIPp)."""
    import base64
    import hashlib
    import hmac
    secret = sqlite3.connect(secrets_db).execute("SELECT value FROM turn_secret").fetchone()[0]
    user = f"{int(time.time()) + lifetime}:bench@example.com"
    password = base64.b64encode(hmac.new(secret.encode(), user.encode(), hashlib.sha1).digest()).decode()
    return user, password


def streams(n, turn_pid, user, password):
    """n relayed streams (n clients in pairs, -y) for 500 packets each."""
    cpu0, t0 = cpu_seconds(turn_pid), time.time()
    out = subprocess.run(
        ["turnutils_uclient", "-y", "-c", "-m", str(n), "-n", "500", "-l", "172", "-z", "20",
         "-u", user, "-w", password, AV],
        capture_output=True, text=True, timeout=120,
    ).stdout
    cpu, wall = cpu_seconds(turn_pid) - cpu0, time.time() - t0
    # coturn's CPU over uclient's sending (its allocations' work included: a ceiling)
    sending = re.search(r"Total transmit time is (\d+)", out)
    wall = max(int(sending.group(1)), 1) if sending else wall
    lost = re.search(r"Total lost packets (\d+) \(([\d.]+)%\)", out)
    jitter = re.search(r"Average jitter ([\d.]+) ms", out)
    sent = re.findall(r"tot_send_msgs=(\d+)", out)
    return {
        "streams": n,
        "sent": int(sent[-1]) if sent else 0,
        "loss": float(lost.group(2)) if lost else float("nan"),
        "jitter": float(jitter.group(1)) if jitter else float("nan"),
        "cpu_pct": 100 * cpu / wall,
        "per_core": n / (cpu / wall) if cpu > 0 else float("inf"),
        "rss": rss_kib(turn_pid),
    }


def credential_rate(fe, work, rate, total, password):
    inj = os.path.join(work, "users.csv")
    with open(inj, "w") as f:
        f.write("SEQUENTIAL\n")
        f.write(f"alice;[authentication username=alice password={password}]\n")
    cpu0, t0 = cpu_seconds(fe.pid), time.time()
    r = subprocess.run(
        ["sipp", "127.0.0.12:%d" % PORT, "-sf", os.path.abspath("bench/sipp/mras.xml"), "-inf", inj, "-i", "127.0.0.1",
         "-p", "5399", "-r", str(rate), "-m", str(total), "-l", "500", "-timeout", "120",
         "-trace_stat", "-stf", os.path.join(work, "mras.csv"), "-nd"],
        capture_output=True, text=True, cwd=work, timeout=180,
    )
    wall, cpu = time.time() - t0, cpu_seconds(fe.pid) - cpu0
    stats = open(os.path.join(work, "mras.csv")).read().splitlines()
    head, last = stats[0].split(";"), stats[-1].split(";")
    ok = int(last[head.index("SuccessfulCall(C)")])
    failed = int(last[head.index("FailedCall(C)")])
    return {"ok": ok, "failed": failed, "rate": ok / wall, "us_per": 1e6 * cpu / max(ok, 1), "rc": r.returncode}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--confab", required=True)
    ap.add_argument("--streams", default="100,400,800")
    ap.add_argument("--rate", type=int, default=2000)
    a = ap.parse_args()
    subprocess.run(["ip", "addr", "add", f"{AV}/32", "dev", "lo"], check=True)
    work = tempfile.mkdtemp(prefix="confab-relay-bench-")
    topology = os.path.join(work, "topology.toml")
    open(topology, "w").write(TOPOLOGY)
    fe_dir, edge_dir = os.path.join(work, "fe"), os.path.join(work, "edge")
    os.makedirs(fe_dir)
    fe_log, edge_log = os.path.join(work, "fe.log"), os.path.join(work, "edge.log")
    fe = start(a.confab, fe_dir, fe_log, "--bind", "127.0.0.12", "--fqdn", "fe01.example.com",
               "--topology", topology, "--shards", "2")
    edge = None
    try:
        wait_for(fe_log, "server.ready")
        subprocess.run([a.confab, "edge", "prepare", "--fqdn", "edge01.example.com", "--out", edge_dir,
                        "--data-dir", fe_dir, "--topology", topology], check=True, capture_output=True)
        edge = start(a.confab, edge_dir, edge_log, "--bind", "127.0.0.20", "--fqdn", "edge01.example.com",
                     "--topology", topology)
        wait_for(edge_log, 'event="av.secrets" count=1')
        wait_for(edge_log, 'event="av.healthy"')
        turn_pid = int(open(os.path.join(edge_dir, "turn", "turnserver.pid")).read())
        user, password = credentials(os.path.join(edge_dir, "turn", "secrets.db"))
        rows = [streams(int(n), turn_pid, user, password) for n in a.streams.split(",")]
        demo = open(os.path.join(fe_dir, "demo-users.txt")).read()
        alice = re.search(r"alice@example.com (\S+)", demo).group(1)
        cred = credential_rate(fe, work, a.rate, 5000, alice)
    finally:
        for p in (edge, fe):
            if p:
                p.terminate()
                p.wait(timeout=20)
    print("\nRelayed streams through coturn (G.711: 172-byte packets every 20 ms, both directions echoed)")
    print("| streams | packets sent | loss | jitter | coturn CPU | streams per core | coturn RSS |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['streams']} | {r['sent']:,} | {r['loss']:.2f}% | {r['jitter']:.2f} ms | "
              f"{r['cpu_pct']:.1f}% | {r['per_core']:,.0f} | {r['rss'] / 1024:.1f} MiB |")
    print("\nMedia relay credentials (SERVICE with digest, answered with TURN credentials)")
    print(f"{cred['ok']:,} issued, {cred['failed']} failed, {cred['rate']:,.0f}/s, "
          f"{cred['us_per']:.0f} µs of Front End CPU each (challenge included)")


if __name__ == "__main__":
    main()
