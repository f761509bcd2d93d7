"""bench/meetings: see that script for what it measures. Starts a Confab (release, two shards),
creates meetings, and joins participants with SIPp (bench/sipp/rgs_caller.xml: an INVITE whose
SDP names one sink port, held for --hold seconds), spread over the meetings by an injection
file. The sink (rtp-sink --talk) answers every frame with one of its own, so every participant
talks. Over a steady window it reads the RTP at the sink, Confab's CPU (/proc/PID/stat) and
memory (VmRSS). Then an IM fan-out: --im-size participants that answer every MESSAGE within
their call, one of them (by address) writing --messages messages to the meeting."""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from queue_music import cpu_seconds, rss_kib, wait_for  # noqa: E402  (the same process readings)

SIP_PORT = 5320
SINK_PORT = 40010
WINDOW = 10


# A participant that answers every MESSAGE the meeting sends within its call and hangs up once
# none came for a while (the call head is rgs_caller.xml's, up to its ACK).
READER_TAIL = """  <label id="loop"/>
  <recv request="MESSAGE" timeout="8000" ontimeout="bye"/>
  <send next="loop"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

  ]]></send>
  <label id="bye"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=z9hG4bK-[call_number]-b;rport
From: <sip:[caller]@[caller_domain]>;tag=[call_number]c
To: [$to_hdr]
Call-ID: [call_id]
[routes]
CSeq: 3 BYE
Max-Forwards: 70
Content-Length: 0

  ]]></send>
  <recv response="200"/>
  <Reference variables="to_hdr"/>
</scenario>
"""


def scenarios(work):
    """The participant scenario with the meeting from the injection file, and the reader."""
    caller = open("bench/sipp/rgs_caller.xml").read()
    participant = os.path.join(work, "participant.xml")
    open(participant, "w").write(caller.replace("[service]", "[field0]"))
    head = caller[: caller.index("  <pause")]
    reader = os.path.join(work, "reader.xml")
    open(reader, "w").write(head + READER_TAIL)
    return participant, reader


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--confab", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--participants", default="100,300,600")
    ap.add_argument("--size", type=int, default=20)
    ap.add_argument("--hold", type=int, default=25)
    ap.add_argument("--im-size", type=int, default=100)
    ap.add_argument("--messages", type=int, default=50)
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix="confab-meetings-")
    log = os.path.join(data, "confab.log")
    cli = lambda *args: subprocess.run([a.confab, *args, "--data-dir", data], check=True,
                                       capture_output=True, text=True).stdout
    server = subprocess.Popen(
        [a.confab, "up", "--data-dir", data, "--sip-port", str(SIP_PORT), "--dns", "off",
         "--web-port", "0", "--media-ports", "20000-39998"],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "info"})
    try:
        wait_for(log, "server.ready")
        password = next(l.split()[1] for l in open(os.path.join(data, "demo-users.txt"))
                        if l.startswith("alice@"))
        participant, reader = scenarios(data)
        counts = [int(x) for x in a.participants.split(",") if x.strip()]
        most = max(counts + [1])
        ids = []
        for _ in range((most + a.size - 1) // a.size):
            out = cli("meeting", "create", "--organizer", "alice@example.com")
            ids.append(re.search(r"created meeting (\d+)", out).group(1))
        wait_for(log, f"meetings={len(ids)} ")
        rows = []
        for n in counts:
            rows.append(audio(a, server.pid, n, ids, participant, password, data))
        im = fanout(a, server.pid, ids[0], reader, password, data)
        print()
        print(f"{'participants':>12} {'meetings':>8} {'pkts/s':>8} {'expected':>8} {'gap p50':>8} "
              f"{'gap p99':>8} {'CPU %':>7} {'µs CPU/participant/s':>21} {'KiB/participant':>16}")
        for r in rows:
            print(f"{r['n']:>12} {r['meetings']:>8} {r['sink']['packets_per_s']:>8} {r['n'] * 50:>8} "
                  f"{r['sink']['gap_p50_us'] / 1000:>6.1f}ms {r['sink']['gap_p99_us'] / 1000:>6.1f}ms "
                  f"{r['cpu_pct']:>7.1f} {r['us_per_participant']:>21.1f} {r['kib_per_participant']:>16.1f}")
        print()
        print(f"IM fan-out, one meeting of {a.im_size}: {im['messages']} messages, "
              f"{im['delivered']} of {im['expected']} deliveries answered, "
              f"{im['us_per_delivery']:.1f} µs of Confab CPU per delivery "
              f"(about {1e6 / max(im['us_per_delivery'], 0.001):,.0f} deliveries per second per core), "
              f"all delivered {im['seconds']:.1f} s after the first message")
        print("Kamailio: no column — it proxies SIP; it has no media engine and no conference focus.")
    finally:
        server.terminate()
        server.wait(timeout=20)


def audio(a, pid, n, ids, participant, password, work):
    """n participants over meetings of a.size; the sink talks back."""
    meetings = (n + a.size - 1) // a.size
    inf = os.path.join(work, f"meetings-{n}.csv")
    with open(inf, "w") as f:
        f.write("SEQUENTIAL\n")
        for i in range(n):
            f.write(f"meet-{ids[i // a.size]};\n")
    base_rss = rss_kib(pid)
    rate = 100
    sipp = subprocess.Popen(
        ["sipp", "-sf", participant, f"127.0.0.1:{SIP_PORT}", "-i", "127.0.0.1", "-p", "5321",
         "-inf", inf, "-key", "caller", "alice", "-key", "caller_domain", "example.com",
         "-key", "domain", "example.com", "-key", "rtp_port", str(SINK_PORT),
         "-au", "alice", "-ap", password, "-m", str(n), "-l", str(n), "-r", str(rate),
         "-d", str(a.hold * 1000), "-nostdin", "-timeout", str(a.hold + 60) + "s", "-mp", "6200"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(n / rate + 3)
    # everyone in: the sink talks back for the window, and reports what Confab sent it
    sink = subprocess.Popen([f"{a.bin}/rtp-sink", str(SINK_PORT), str(WINDOW), "--talk"],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    c0, t0 = cpu_seconds(pid), time.time()
    time.sleep((WINDOW - 2) / 2)
    rss = rss_kib(pid)
    time.sleep((WINDOW - 2) / 2)
    cpu = (cpu_seconds(pid) - c0) / (time.time() - t0)
    out, _ = sink.communicate()
    sink_stats = json.loads(out)
    sipp.wait(timeout=a.hold + 90)
    time.sleep(3)
    r = {"n": n, "meetings": meetings, "sink": sink_stats, "cpu_pct": cpu * 100,
         "us_per_participant": cpu * 1e6 / n, "kib_per_participant": (rss - base_rss) / n}
    print(json.dumps(r), flush=True)
    return r


def fanout(a, pid, meeting, reader, password, work):
    """a.im_size readers in one meeting, then a.messages messages from alice."""
    screen = os.path.join(work, "readers-screen.log")
    readers = subprocess.Popen(
        ["sipp", "-sf", reader, f"127.0.0.1:{SIP_PORT}", "-i", "127.0.0.1", "-p", "5322",
         "-s", f"meet-{meeting}", "-key", "caller", "alice", "-key", "caller_domain",
         "example.com", "-key", "domain", "example.com", "-key", "rtp_port", "40020",
         "-au", "alice", "-ap", password, "-m", str(a.im_size),
         "-l", str(a.im_size), "-r", "100", "-nostdin", "-timeout", "120s", "-mp", "6300",
         "-trace_screen", "-screen_file", screen],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(a.im_size / 100 + 3)
    c0, t0 = cpu_seconds(pid), time.time()
    subprocess.run(
        ["sipp", "-sf", "tests/sipp/uac_message.xml", f"127.0.0.1:{SIP_PORT}", "-i", "127.0.0.1",
         "-p", "5323", "-s", f"meet-{meeting}", "-key", "caller", "alice", "-key",
         "caller_domain", "example.com", "-key", "domain", "example.com", "-au", "alice",
         "-ap", password, "-m", str(a.messages), "-r", "100", "-nostdin", "-timeout", "60s"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    readers.wait(timeout=120)
    # the readers hang up 8 s after the last message they got
    seconds = time.time() - t0 - 8
    cpu = cpu_seconds(pid) - c0
    expected = a.messages * (a.im_size - 1)
    text = open(screen).read() if os.path.exists(screen) else ""
    got = [int(m) for m in re.findall(r"MESSAGE\s+<-+\s+(\d+)", text)]
    delivered = max(got) if got else 0
    r = {"messages": a.messages, "expected": expected, "delivered": delivered,
         "us_per_delivery": cpu * 1e6 / max(delivered, 1), "seconds": seconds}
    print(json.dumps(r), flush=True)
    return r


if __name__ == "__main__":
    main()
