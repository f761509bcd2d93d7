#!/usr/bin/env python3
"""Confab against Kamailio, side by side, with identical SIPp loads (run by bench/compare).

For each workload the servers take turns (Confab with each --shards count, shown as
confab-N, then Kamailio, then the UDP floor where it applies), each freshly started, and each
gets:
  1. a rate search: SIPp at rising call rates for a few seconds each; the highest rate at which
     every call succeeded with no retransmission is the "clean rate";
  2. a measured run at half that rate: server CPU time (utime+stime of every server process,
     from /proc) divided by completed transactions, and p50/p99 response times from SIPp's
     per-call response-time trace;
  3. peak memory: the largest sum of PSS (/proc/PID/smaps_rollup) over the server's processes,
     sampled every 250 ms for its whole life.
A transaction is one SIPp call: REGISTER (challenge + 200), MESSAGE (challenge + relayed 200),
or a call (INVITE challenged, INVITE relayed, 200, ACK, BYE).

SIPp sends each UDP workload from one socket, so the kernel gives all of its requests to one
Confab shard (SO_REUSEPORT spreads by source); answers from the callee's SIPp may reach the
other shard and are handed over. With one source confab-2 therefore shows what a second
shard costs, not what it adds; --udp-sources many gives every call a socket of its own
(SIPp -t un), for every server alike, and workload (d) opens a connection per user, which
Confab spreads over its shards.

Prints one table, writes CSV and a PNG chart (gnuplot) into the output directory.
Standard library only; needs sipp, kamailio and gnuplot on PATH (bench/compare installs them).
"""

import argparse
import csv
import glob
import os
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "bench-secret"
HOST = "127.0.0.1"
CALLEE = "callee"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Open files: as many as allowed (SIPp's TCP mode opens a connection per call).
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))
MAX_SOCKETS = max(_hard - 200, 1000)

WORKLOADS = {
    # key: (title, scenario, sipp transport, needs a registered UAS, UAS scenario)
    "a": ("(a) REGISTER, UDP", "register.xml", "u1", False, None),
    "b": ("(b) MESSAGE relayed, UDP", "message.xml", "u1", True, "uas_message.xml"),
    "c": ("(c) INVITE/BYE calls, UDP", "call.xml", "u1", True, "uas_call.xml"),
    "d": ("(d) REGISTER, TCP, conn/user", "register.xml", "tn", False, None),
    "e": ("(e) calls to a number, 500 routes", "call.xml", "u1", True, "uas_call.xml"),
}

# Workload (e): every call dials this national number; the caller's dial plan has 100 rules
# (the last normalizes it), 500 routes match by area code (this one is the 250th), the trunk
# writes it as ten digits for the gateway (the SIPp UAS). See bench/harness voice-config.
PSTN_NUMBER = "4495550123"
# The gateway listens on an address of its own: a gateway is trusted by its address, and the
# callers are on HOST.
GATEWAY_HOST = "127.0.0.2"
VOICE_CONFIG = None  # the voice-config binary, set in main()


def die(msg):
    print(f"bench/compare: {msg}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------- process accounting


def proc_tree(root):
    """`root` and every process whose parent chain leads to it."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                pass
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return tree


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / CLOCK_TICKS


def pss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


class Server:
    """A server process tree under measurement."""

    name = "?"

    def __init__(self, port, work):
        self.port = port
        self.work = work
        self.proc = None
        self.peak_kib = 0
        self._stop = threading.Event()

    def command(self):
        raise NotImplementedError

    def prepare(self, users):
        """Before start: anything the server needs on disk."""

    def after_start(self, users):
        """After start: users the server must know."""

    def start(self, users):
        self.prepare(users)
        log = open(os.path.join(self.work, f"{self.name}.log"), "w")
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.work
        )
        self.wait_ready()
        self.after_start(users)
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        while not self._stop.wait(0.25):
            self.peak_kib = max(self.peak_kib, pss_kib(self.pids()))

    def pids(self):
        return proc_tree(self.proc.pid)

    def cpu(self):
        return cpu_seconds(self.pids())

    def wait_ready(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((HOST, 0))
        sock.settimeout(0.2)
        lport = sock.getsockname()[1]
        deadline = time.time() + 30
        n = 0
        while time.time() < deadline:
            if self.proc.poll() is not None:
                die(f"{self.name} exited during start-up; see {self.work}/{self.name}.log")
            n += 1
            probe = (
                f"OPTIONS sip:{HOST}:{self.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {HOST}:{lport};branch=z9hG4bKready{n}\r\n"
                f"From: <sip:probe@example.com>;tag=p{n}\r\nTo: <sip:{HOST}:{self.port}>\r\n"
                f"Call-ID: ready{n}@bench\r\nCSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            sock.sendto(probe.encode(), (HOST, self.port))
            try:
                data, _ = sock.recvfrom(4096)
                if data.startswith(b"SIP/2.0 "):
                    return
            except socket.timeout:
                pass
        die(f"{self.name} did not answer OPTIONS on {HOST}:{self.port} within 30 s")

    def stop(self):
        self._stop.set()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Confab(Server):
    def __init__(self, port, work, binary, shards, archiving="off"):
        super().__init__(port, work)
        self.binary = binary
        self.shards = shards
        # archiving every internal message: "normal" (to the local queue), "critical" (into
        # the archive database before it is relayed)
        self.archiving = archiving
        suffix = {"off": "", "normal": "+archive", "critical": "+critical"}[archiving]
        self.name = f"confab-{shards}{suffix}"
        self.data = os.path.join(work, "confab-data")

    def command(self):
        return [
            self.binary, "up", "--data-dir", self.data, "--bind", HOST,
            "--sip-port", str(self.port), "--domain", "example.com", "--no-demo-users",
            "--dns", "off", "--web-port", "0", "--lockout-failures", "0",
            "--digest-algorithms", "md5", "--shards", str(self.shards),
            "--gateway-probe", "0",
        ]  # fmt: skip

    def store_args(self):
        """How the CLI reaches the server's store."""
        return ["--data-dir", self.data]

    def after_start(self, users):
        path = os.path.join(self.work, "users.txt")
        with open(path, "w") as f:
            for u in users:
                f.write(f"{u}@example.com {PASSWORD}\n")
        subprocess.run(
            [self.binary, "user", "import", path, *self.store_args()],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        # an earlier run on this data dir may have switched archiving on
        touched = os.path.join(self.data, "archiving-set")
        if self.archiving != "off" or os.path.exists(touched):
            self.set_archiving()
            open(touched, "w").close()

    def set_archiving(self):
        """Every internal message archived (critical mode as asked), or none (the data dir is
        shared by the runs); waits for the server to read it."""
        critical = "on" if self.archiving == "critical" else "off"
        internal = "off" if self.archiving == "off" else "on"
        for args in (["policy", "set", "global", "--internal", internal], ["critical", critical]):
            subprocess.run([self.binary, "archive", *args, *self.store_args()],
                           check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        log = os.path.join(self.work, f"{self.name}.log")
        want = f"critical={'true' if critical == 'on' else 'false'} policies=1"
        deadline = time.time() + 10
        while want not in open(log).read():
            if time.time() > deadline:
                die(f"{self.name} did not take the archiving policy; see {log}")
            time.sleep(0.1)

    def enable_voice(self):
        """Workload (e): the routing configuration applied, every user given a number and
        enterprise voice with dial plan plan-9 (set in the database at once: a CLI call per
        user would take longer than the load), then wait for the server to read it."""
        conf = os.path.join(self.work, "voice.toml")
        with open(conf, "w") as f:
            f.write(subprocess.run([VOICE_CONFIG, f"{GATEWAY_HOST}:{UAS_PORT}"], check=True,
                                   capture_output=True, text=True).stdout)
        subprocess.run([self.binary, "voice", "apply", conf, *self.store_args()],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        db = sqlite3.connect(os.path.join(self.data, "confab.db"))
        db.execute("UPDATE users SET voice = 1, dial_plan = 'plan-9', "
                   "line_uri = 'tel:+1999' || printf('%07d', rowid)")  # fmt: skip
        db.commit()
        db.close()
        log = os.path.join(self.work, f"{self.name}.log")
        deadline = time.time() + 10
        while "voice configuration in force" not in open(log).read():
            if time.time() > deadline:
                die(f"{self.name} did not take the voice configuration; see {log}")
            time.sleep(0.1)


class Kamailio(Server):
    name = "kamailio"

    def __init__(self, port, work, voice=False):
        super().__init__(port, work)
        # workload (e): the same routing as a script of its own (kamailio_pstn_cfg)
        self.cfg = (
            kamailio_pstn_cfg(work) if voice else os.path.join(ROOT, "bench/kamailio/kamailio.cfg")
        )

    def enable_voice(self):
        """Workload (e): started on its routing script already."""

    def command(self):
        return [
            # -x tlsf: the fast memory manager; the default (q_malloc, with debugging aids)
            # spent over half of Kamailio's CPU in qm_malloc on the call workload
            "kamailio", "-f", self.cfg, "-DD", "-E",
            "-x", "tlsf",
            "-m", "512", "-M", "32", "-Y", self.work, "-P", os.path.join(self.work, "k.pid"),
            "-A", f"LISTEN_UDP=udp:{HOST}:{self.port}", "-A", f"LISTEN_TCP=tcp:{HOST}:{self.port}",
        ]  # fmt: skip


class Floor(Server):
    name = "udp-floor"

    def __init__(self, port, work, binary):
        super().__init__(port, work)
        self.binary = binary

    def command(self):
        return [self.binary, f"{HOST}:{self.port}", "2"]


# ---------------------------------------------------------------- SIPp


class SippRun:
    def __init__(self, ok, calls, failed, retrans, rtts):
        self.ok, self.calls, self.failed, self.retrans = ok, calls, failed, retrans
        self.rtts = rtts


# "u1" (one socket) or "un" (a socket per call) for the UDP workloads: --udp-sources
UDP_MODE = "u1"


def kamailio_pstn_cfg(work):
    """Kamailio's configuration for workload (e): bench/kamailio/kamailio.cfg with numbers
    routed as Confab routes them, by the same rules written as a script: 99 dial plan rules
    that do not match, then the national one (first match wins, like a dial plan), then 500
    area-code routes tried in order (the one that matches sends the call to the gateway, the
    number as ten digits)."""
    with open(os.path.join(ROOT, "bench/kamailio/kamailio.cfg")) as f:
        base = f.read()
    lines = ["route[PSTN] {"]
    for r in range(99):
        lines.append(f"\tif (!isflagset(1) && subst_user('/^[*]9{r:03d}([0-9]{{4}})$/+1425555\\1/')) setflag(1);")
    lines.append("\tif (!isflagset(1) && subst_user('/^1?([2-9][0-9]{9})$/+1\\1/')) setflag(1);")
    for r in range(500):
        lines.append(
            f'\tif ($rU =~ "^[+]1{200 + r}[0-9]{{7}}$") {{ subst_user(\'/^[+]1//\'); '
            f'$du = "sip:{GATEWAY_HOST}:{UAS_PORT}"; t_relay(); exit; }}'
        )
    lines.append('\tsl_send_reply("404", "No route");\n\texit;\n}\n')
    hook = '\tif (!lookup("location")) {'
    assert hook in base, "bench/kamailio/kamailio.cfg changed: update kamailio_pstn_cfg"
    base = base.replace(hook, '\tif ($rU =~ "^[0-9+]+$") {\n\t\troute(PSTN);\n\t}\n' + hook, 1)
    path = os.path.join(work, "kamailio-pstn.cfg")
    with open(path, "w") as f:
        f.write(base + "\n" + "\n".join(lines))
    return path


def sipp_load(server, workload, rate, count, users_csv, work):
    _, scenario, transport, _, _ = WORKLOADS[workload]
    if transport == "u1":
        transport = UDP_MODE
    run_dir = tempfile.mkdtemp(dir=work, prefix=f"sipp-{workload}-")
    stat = os.path.join(run_dir, "stat.csv")
    args = [
        "sipp", f"{HOST}:{server.port}", "-sf", os.path.join(ROOT, "bench/sipp", scenario),
        "-inf", users_csv, "-s", PSTN_NUMBER if workload == "e" else CALLEE,
        "-i", HOST, "-t", transport,
        "-r", str(rate), "-m", str(count), "-l", str(max(rate * 2, 100)),
        "-recv_timeout", "4000", "-timeout", f"{count // rate + 20}s",
        "-trace_stat", "-stf", stat, "-fd", "1", "-trace_rtt", "-rtt_freq", "1",
        "-nostdin", "-max_socket", str(MAX_SOCKETS),
    ]  # fmt: skip
    p = subprocess.Popen(
        args, cwd=run_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    p.wait()
    row = last_stat_row(stat)
    ok_calls = int(row.get("SuccessfulCall(C)", 0))
    failed = int(row.get("FailedCall(C)", 0))
    retrans = int(row.get("Retransmissions(C)", 0))
    rtts = []
    for path in glob.glob(os.path.join(run_dir, "*_rtt.csv")):
        with open(path) as f:
            for line in f:
                parts = line.strip().split(";")
                if len(parts) >= 2:
                    try:
                        rtts.append(float(parts[1]))
                    except ValueError:
                        pass
    shutil.rmtree(run_dir, ignore_errors=True)
    clean = ok_calls == count and failed == 0 and retrans == 0
    return SippRun(clean, ok_calls, failed, retrans, rtts)


def last_stat_row(path):
    try:
        with open(path) as f:
            rows = list(csv.reader(f, delimiter=";"))
    except OSError:
        return {}
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1]))


def register_callee(server, work):
    """One registration for the UAS, through SIPp's own REGISTER test scenario."""
    subprocess.run(
        [
            "sipp", f"{HOST}:{server.port}", "-sf", os.path.join(ROOT, "tests/sipp/register.xml"),
            "-s", CALLEE, "-au", CALLEE, "-ap", PASSWORD, "-key", "contact_port", str(UAS_PORT),
            "-key", "domain", "example.com",
            "-i", HOST, "-m", "1", "-timeout", "10s", "-nostdin",
        ],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
    )  # fmt: skip


UAS_PORT = 5200


def start_uas(workload, work):
    scenario = WORKLOADS[workload][4]
    return subprocess.Popen(
        [
            "sipp", "-sf", os.path.join(ROOT, "tests/sipp", scenario),
            "-i", GATEWAY_HOST if workload == "e" else HOST,
            "-p", str(UAS_PORT), "-nostdin", "-bind_local",
        ],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def write_users_csv(path, users):
    """A SIPp injection file: one user per call, in turn; returns `path`."""
    with open(path, "w") as f:
        f.write("SEQUENTIAL\n")
        for u in users:
            # SIPp expands the keyword in a field: each call authenticates as its own user
            f.write(f"{u};[authentication username={u} password={PASSWORD}]\n")
    return path


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# ---------------------------------------------------------------- one server, one workload


def step(make_server, workload, rate, seconds, users, users_csv, work):
    """One load on a freshly started server: returns (SIPp's result, server CPU seconds used,
    peak KiB)."""
    server = make_server()
    server.start(users)
    uas = None
    try:
        if workload == "e":
            # the gateway: a trunk, not a registered user
            uas = start_uas(workload, work)
            server.enable_voice()
        elif WORKLOADS[workload][3]:
            uas = start_uas(workload, work)
            time.sleep(0.3)
            register_callee(server, work)
            # every user registered once, so that the location table holds them all
            sipp_load(server, "a", 2000, len(users) - 1, users_csv, work)
        before = server.cpu()
        r = sipp_load(server, workload, rate, rate * seconds, users_csv, work)
        used = server.cpu() - before
        return r, used, server.peak_kib
    finally:
        if uas:
            uas.terminate()
            uas.wait()
        server.stop()


def measure(make_server, workload, args, users, users_csv, work):
    """Rate search (a fresh server for every step), then the measured run at half the clean
    rate."""
    peak = 0
    steps = []

    def run(rate, seconds):
        nonlocal peak
        r, used, kib = step(make_server, workload, rate, seconds, users, users_csv, work)
        peak = max(peak, kib)
        return r, used

    best, worst = 0, None
    rate = args.start_rate
    while rate <= args.max_rate:
        r, _ = run(rate, args.step_seconds)
        steps.append((rate, r))
        if not r.ok:
            worst = rate
            break
        best = rate
        rate *= 2
    if worst is not None:
        lo, hi = best, worst
        for _ in range(args.bisect):
            mid = (lo + hi) // 2 // 50 * 50
            if mid <= lo:
                break
            r, _ = run(mid, args.step_seconds)
            steps.append((mid, r))
            lo, hi = (mid, hi) if r.ok else (lo, mid)
        best = lo
    half = max(best // 2, 50)
    r, used = run(half, args.measure_seconds)
    return {
        "workload": workload,
        "server": make_server().name,
        "cpu_us_per_txn": used / max(r.calls, 1) * 1e6,
        "clean_rate": best,
        "capped": worst is None,
        "rate_measured": half,
        "txns": r.calls,
        "failed": r.failed,
        "p50_ms": percentile(r.rtts, 0.50),
        "p99_ms": percentile(r.rtts, 0.99),
        "peak_mib": peak / 1024,
        "steps": " ".join(
            f"{rt}" + ("" if s.ok else f"!(failed {s.failed}, retrans {s.retrans})")
            for rt, s in steps
        ),
    }


# ---------------------------------------------------------------- output


def ratio(a, b):
    return a / b if b else float("nan")


def report(results, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    csv_path = os.path.join(out_dir, f"compare-{stamp}.csv")
    fields = list(results[0].keys())
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(results)

    head = (
        f"{'workload':<30} {'server':<12} {'CPU µs/txn':>11} {'clean rate/s':>13} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'peak MiB':>9}"
    )
    lines = [head, "-" * len(head)]
    by = {(r["workload"], r["server"]): r for r in results}
    for key, (title, *_rest) in WORKLOADS.items():
        rows = [r for r in results if r["workload"] == key]
        if not rows:
            continue
        for r in rows:
            cap = "≥" if r["capped"] else " "
            lines.append(
                f"{title:<30} {r['server']:<12} {r['cpu_us_per_txn']:>11.1f} "
                f"{cap}{r['clean_rate']:>12} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} "
                f"{r['peak_mib']:>9.1f}"
            )
            title = ""
        k = by.get((key, "kamailio"))
        for c in (r for r in rows if r["server"].startswith("confab")):
            if not k:
                break
            label = "C" + c["server"][len("confab"):] + "/K"
            lines.append(
                f"{'':<30} {label:<12} {ratio(c['cpu_us_per_txn'], k['cpu_us_per_txn']):>11.2f} "
                f" {ratio(c['clean_rate'], k['clean_rate']):>12.2f} "
                f"{ratio(c['p50_ms'], k['p50_ms']):>7.2f} {ratio(c['p99_ms'], k['p99_ms']):>7.2f} "
                f"{ratio(c['peak_mib'], k['peak_mib']):>9.2f}"
            )
    table = "\n".join(lines)
    with open(os.path.join(out_dir, f"compare-{stamp}.txt"), "w") as f:
        f.write(table + "\n")
    png = chart(results, out_dir, stamp)
    return table, csv_path, png


def chart(results, out_dir, stamp):
    if not shutil.which("gnuplot"):
        return None
    data = os.path.join(out_dir, f"compare-{stamp}.dat")
    servers = sorted({r["server"] for r in results if r["server"].startswith("confab")})
    servers += ["kamailio", "udp-floor"]
    with open(data, "w") as f:
        f.write("workload " + " ".join(f"{s}_cpu {s}_rate" for s in servers) + "\n")
        for key, (title, *_r) in WORKLOADS.items():
            rows = {r["server"]: r for r in results if r["workload"] == key}
            if not rows:
                continue
            vals = []
            for s in servers:
                r = rows.get(s)
                vals += [f"{r['cpu_us_per_txn']:.1f}", str(r["clean_rate"])] if r else ["0", "0"]
            f.write(f'"{title}" ' + " ".join(vals) + "\n")
    png = os.path.join(out_dir, f"compare-{stamp}.png")

    def plots(first_col):
        parts = []
        for i, name in enumerate(servers):
            col = first_col + 2 * i
            src = f'"{data}" using {col}:xtic(1)' if i == 0 else f'"" using {col}'
            parts.append(f'{src} title "{name}"')
        return ", ".join(parts)

    cpu_plots, rate_plots = plots(2), plots(3)
    script = f"""
set terminal pngcairo size 1100,500 font ",10" noenhanced
set output "{png}"
set multiplot layout 1,2
set style data histograms
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set key top left
set xtics rotate by -20
set grid ytics
set title "CPU time per transaction (µs, lower is better)"
plot {cpu_plots}
set title "Highest clean rate (transactions/s, higher is better)"
plot {rate_plots}
unset multiplot
"""
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if r.returncode != 0:
        print(f"bench/compare: gnuplot failed: {r.stderr.strip()}", file=sys.stderr)
        return None
    return png


# ---------------------------------------------------------------- main


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--confab", required=True, help="the confab binary (release build)")
    p.add_argument("--floor", required=True, help="the udp-floor binary")
    p.add_argument("--workloads", default="a,b,c,d,e", help="which of a,b,c,d,e (default: all)")
    p.add_argument("--users", type=int, default=1000, help="registered users (default 1000)")
    p.add_argument("--start-rate", type=int, default=250, help="first rate tried (calls/s)")
    p.add_argument("--max-rate", type=int, default=32000, help="highest rate tried")
    p.add_argument("--step-seconds", type=int, default=3, help="length of each search step")
    p.add_argument("--bisect", type=int, default=3, help="bisection steps after a failure")
    p.add_argument("--measure-seconds", type=int, default=10, help="length of the CPU run")
    p.add_argument("--udp-sources", choices=("one", "many"), default="one",
                   help="UDP workloads from one SIPp socket, or a socket per call (default one)")
    p.add_argument("--shards", default="1,2", help="Confab's shard counts to run (default 1,2)")
    p.add_argument("--archiving", default="off",
                   help="Confab's archiving modes to run, of off,normal,critical (default off)")
    p.add_argument("--out", default=os.path.join(ROOT, "bench/results"), help="output dir")
    args = p.parse_args()
    global UDP_MODE
    UDP_MODE = "un" if args.udp_sources == "many" else "u1"
    args.confab, args.floor = os.path.abspath(args.confab), os.path.abspath(args.floor)
    global VOICE_CONFIG
    VOICE_CONFIG = os.path.join(os.path.dirname(args.floor), "voice-config")

    for tool in ("sipp", "kamailio"):
        if not shutil.which(tool):
            die(f"{tool} is not installed (bench/compare installs it with apt-get)")
    work = tempfile.mkdtemp(prefix="confab-bench-")
    users = [f"u{i}" for i in range(args.users)]
    users_csv = write_users_csv(os.path.join(work, "users.csv"), users)
    all_users = users + [CALLEE]

    results = []
    for wl in args.workloads.split(","):
        if wl not in WORKLOADS:
            die(f"unknown workload {wl!r}; choose from a,b,c,d,e")
        servers = [
            (lambda n=int(n), a=a: Confab(5080, work, args.confab, n, a))
            for n in args.shards.split(",")
            for a in args.archiving.split(",")
        ]
        servers.append(lambda wl=wl: Kamailio(5090, work, voice=(wl == "e")))
        if wl == "a":
            servers.append(lambda: Floor(5100, work, args.floor))
        for make in servers:
            print(f"bench/compare: {WORKLOADS[wl][0]} on {make().name} ...", flush=True)
            r = measure(make, wl, args, all_users, users_csv, work)
            print(
                f"  clean rate {r['clean_rate']}/s (steps {r['steps']}), "
                f"{r['cpu_us_per_txn']:.1f} µs CPU/txn at {r['rate_measured']}/s, "
                f"p99 {r['p99_ms']:.2f} ms, peak {r['peak_mib']:.1f} MiB",
                flush=True,
            )
            results.append(r)
    table, csv_path, png = report(results, args.out)
    print()
    print(table)
    print()
    print("≥: the search reached --max-rate without a failure (the load generator's limit).")
    print(f"CSV: {csv_path}")
    if png:
        print(f"chart: {png}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
