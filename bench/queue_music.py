"""bench/queue-music: see that script for what it measures. Starts a Confab with one hunt
group whose only agent never signs in (callers stay queued with music), places CALLERS
calls with SIPp, and over a steady window reads the RTP at a sink (rtp-sink), Confab's CPU
(/proc/PID/stat) and memory (VmRSS); then runs rtp-floor with as many streams."""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

SIP_PORT = 5300
SINK_PORT = 40000
FLOOR_SINK = 40002
WINDOW = 10


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_for(path, needle, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if needle in open(path).read():
            return
        time.sleep(0.1)
    sys.exit(f"bench: '{needle}' never appeared in {path}")


DOC = """[[group]]
name = "Desk"
pool = "bench"
agents = ["agent@example.com"]
[[queue]]
name = "Desk"
pool = "bench"
groups = ["Desk"]
[[workflow]]
name = "Help Desk"
pool = "bench"
address = "sip:helpdesk@example.com"
queue = "Desk"
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--confab", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--callers", default="100,400,1000")
    ap.add_argument("--hold", type=int, default=25)
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix="confab-queue-music-")
    log = os.path.join(data, "confab.log")
    cli = lambda *args: subprocess.run([a.confab, *args, "--data-dir", data], check=True,
                                       capture_output=True, text=True)
    server = subprocess.Popen(
        [a.confab, "up", "--data-dir", data, "--sip-port", str(SIP_PORT), "--dns", "off",
         "--web-port", "0", "--media-ports", "20000-39998"],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "info"})
    try:
        wait_for(log, "server.ready")
        cli("user", "add", "agent@example.com", "--password", "bench-agent")
        doc = os.path.join(data, "rgs.toml")
        open(doc, "w").write(DOC)
        cli("rgs", "import", doc)
        wait_for(log, "rgs.config")
        password = next(l.split()[1] for l in open(os.path.join(data, "demo-users.txt"))
                        if l.startswith("alice@"))
        rows = []
        for n in [int(x) for x in a.callers.split(",")]:
            rows.append(run(a, server.pid, n, password))
        print()
        print(f"{'callers':>8} {'pkts/s':>8} {'expected':>8} {'gap p50':>8} {'gap p99':>8} "
              f"{'audible':>8} {'CPU %':>7} {'µs CPU/caller/s':>16} {'KiB/caller':>11} "
              f"{'floor CPU %':>12} {'floor µs/stream/s':>18}")
        for r in rows:
            print(f"{r['n']:>8} {r['sink']['packets_per_s']:>8} {r['n'] * 50:>8} "
                  f"{r['sink']['gap_p50_us'] / 1000:>6.1f}ms {r['sink']['gap_p99_us'] / 1000:>6.1f}ms "
                  f"{r['sink']['audible']:>8.2f} {r['cpu_pct']:>7.1f} {r['us_per_caller']:>16.1f} "
                  f"{r['kib_per_caller']:>11.1f} {r['floor']['cpu_percent']:>12.1f} "
                  f"{r['floor']['cpu_us_per_stream_s']:>18.1f}")
        print("Kamailio: no column — it is a SIP proxy without a media engine.")
    finally:
        server.terminate()
        server.wait(timeout=20)


def run(a, pid, n, password):
    base_rss = rss_kib(pid)
    rate = 200
    ramp = n / rate
    sipp = subprocess.Popen(
        ["sipp", "-sf", "bench/sipp/rgs_caller.xml", f"127.0.0.1:{SIP_PORT}", "-i", "127.0.0.1",
         "-p", "5301", "-s", "helpdesk", "-key", "caller", "alice", "-key", "caller_domain",
         "example.com", "-key", "domain", "example.com", "-key", "rtp_port", str(SINK_PORT),
         "-au", "alice", "-ap", password, "-m", str(n), "-l", str(n), "-r", str(rate),
         "-d", str(a.hold * 1000), "-nostdin", "-timeout", str(a.hold + 60) + "s", "-mp", "6100"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(ramp + 2)
    sink = subprocess.Popen([f"{a.bin}/rtp-sink", str(SINK_PORT), str(WINDOW)],
                            stdout=subprocess.PIPE, text=True)
    c0, t0 = cpu_seconds(pid), time.time()
    time.sleep(WINDOW / 2)
    rss = rss_kib(pid)
    out, _ = sink.communicate()
    cpu = (cpu_seconds(pid) - c0) / (time.time() - t0)
    sink_stats = json.loads(out)
    sipp.wait(timeout=a.hold + 90)
    time.sleep(3)
    fsink = subprocess.Popen([f"{a.bin}/rtp-sink", str(FLOOR_SINK), str(WINDOW + 1)],
                             stdout=subprocess.PIPE, text=True)
    floor = json.loads(subprocess.run([f"{a.bin}/rtp-floor", str(n), str(WINDOW),
                                       f"127.0.0.1:{FLOOR_SINK}"], capture_output=True,
                                      text=True, check=True).stdout)
    fsink.communicate()
    r = {"n": n, "sink": sink_stats, "cpu_pct": cpu * 100,
         "us_per_caller": cpu * 1e6 / n, "kib_per_caller": (rss - base_rss) / n, "floor": floor}
    print(json.dumps(r), flush=True)
    return r


if __name__ == "__main__":
    main()
