#!/usr/bin/env python3
"""Confab on a slow PostgreSQL (run by bench/slow-db).

Confab reaches its database through a proxy of ours that holds every answer of PostgreSQL
for --delay-ms before passing it on (the injected delay). Two SIPp loads run side by side,
first with no delay, then with it:
  - OPTIONS to the server, which needs no database: its response times must not move;
  - first sign-ins of users the server has not seen (REGISTER, 401, REGISTER with
    credentials, 200): each reads the user and stores the device, so each waits for the
    database twice, while everything else goes on (the engine parks them; see
    ARCHITECTURE.md, "parking").
Prints p50/p99 response times and failures of each load in each phase. Standard library
only; reuses bench/compare.py's server and SIPp helpers.
"""

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402

DATABASE = "confab_slowdb"


class DelayProxy:
    """A TCP proxy to PostgreSQL holding each of its answers for `delay` seconds (in order)."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.delay = 0.0
        self.loop = asyncio.new_event_loop()
        sock = socket.socket()
        sock.bind((compare.HOST, 0))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        threading.Thread(target=self._run, args=(sock,), daemon=True).start()

    def _run(self, sock):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve(sock))

    async def _serve(self, sock):
        server = await asyncio.start_server(self._client, sock=sock)
        async with server:
            await server.serve_forever()

    async def _client(self, client_r, client_w):
        up_r, up_w = await asyncio.open_connection(*self.upstream)
        await asyncio.gather(self._pipe(client_r, up_w, False), self._pipe(up_r, client_w, True))

    async def _pipe(self, reader, writer, delayed):
        queue = asyncio.Queue()

        async def deliver():
            while True:
                at, data = await queue.get()
                wait = at - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()

        task = asyncio.create_task(deliver())
        while True:
            try:
                data = await reader.read(65536)
            except ConnectionError:
                data = b""
            await queue.put((self.loop.time() + (self.delay if delayed else 0), data))
            if not data:
                break
        await task


class SlowDbConfab(compare.Confab):
    def __init__(self, port, work, binary, shards, via_proxy, direct):
        super().__init__(port, work, binary, shards)
        self.via_proxy, self.direct = via_proxy, direct

    def command(self):
        return super().command() + ["--database", self.via_proxy]

    def store_args(self):
        return ["--database", self.direct]


def with_database(url, name):
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))


def fresh_database(server_url):
    """Drops and creates the bench's own database on the server of `server_url`."""
    admin = with_database(server_url, "postgres")
    for sql in (f"DROP DATABASE IF EXISTS {DATABASE}", f"CREATE DATABASE {DATABASE}"):
        subprocess.run(["psql", "-X", "-q", admin, "-c", sql], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip


def run_phase(server, args, users_csv, work):
    """OPTIONS and first sign-ins side by side; returns both SIPp results."""
    results = {}

    def load(name, workload, rate, count, csv):
        results[name] = compare.sipp_load(server, workload, rate, count, csv, work)

    signins = threading.Thread(
        target=load,
        args=("signin", "a", args.signin_rate, args.signin_rate * args.seconds, users_csv),
    )
    signins.start()
    load("options", "o", args.options_rate, args.options_rate * args.seconds, users_csv)
    signins.join()
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--confab", required=True, help="the confab binary (release build)")
    p.add_argument("--server", required=True, help="a PostgreSQL URL (its server is used)")
    p.add_argument("--delay-ms", type=int, default=50, help="delay of each answer (default 50)")
    p.add_argument("--shards", type=int, default=2, help="Confab's shards (default 2)")
    p.add_argument("--options-rate", type=int, default=500, help="OPTIONS/s (default 500)")
    p.add_argument("--signin-rate", type=int, default=5, help="first sign-ins/s (default 5)")
    p.add_argument("--seconds", type=int, default=10, help="length of each phase (default 10)")
    args = p.parse_args()
    args.confab = os.path.abspath(args.confab)
    compare.WORKLOADS["o"] = ("OPTIONS", "options.xml", "u1", False, None)

    fresh_database(args.server)
    direct = with_database(args.server, DATABASE)
    u = urllib.parse.urlsplit(direct)
    proxy = DelayProxy((u.hostname, u.port or 5432))
    via_proxy = urllib.parse.urlunsplit(
        (u.scheme, f"{u.username or 'postgres'}@{compare.HOST}:{proxy.port}", u.path, "", "")
    )
    work = tempfile.mkdtemp(prefix="confab-slowdb-")
    per_phase = args.signin_rate * args.seconds
    users = [f"u{i}" for i in range(2 * per_phase)]
    server = SlowDbConfab(5080, work, args.confab, args.shards, via_proxy, direct)
    rows = []
    try:
        server.start(users)
        for phase, delay in enumerate((0, args.delay_ms)):
            proxy.delay = delay / 1000
            csv = compare.write_users_csv(
                os.path.join(work, f"users{phase}.csv"),
                users[phase * per_phase:(phase + 1) * per_phase],
            )
            print(f"bench/slow-db: database answers delayed {delay} ms ...", flush=True)
            r = run_phase(server, args, csv, work)
            rows.append((delay, r["options"], r["signin"]))
            time.sleep(1)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    pct = compare.percentile
    print()
    print(f"Confab, {args.shards} shards; OPTIONS {args.options_rate}/s and first sign-ins "
          f"{args.signin_rate}/s for {args.seconds} s per row")
    head = (f"{'database delay':<15} {'OPTIONS p50':>11} {'p99 ms':>7} {'failed':>6}   "
            f"{'sign-in p50':>11} {'p99 ms':>7} {'failed':>6}")
    print(head)
    print("-" * len(head))
    for delay, o, s in rows:
        print(f"{str(delay) + ' ms':<15} {pct(o.rtts, 0.5):>11.2f} {pct(o.rtts, 0.99):>7.2f} "
              f"{o.failed:>6}   {pct(s.rtts, 0.5):>11.2f} {pct(s.rtts, 0.99):>7.2f} "
              f"{s.failed:>6}")


if __name__ == "__main__":
    main()
