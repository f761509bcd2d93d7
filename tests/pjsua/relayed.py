#!/usr/bin/env python3
"""A PJSIP user agent for the media relay tests (PyPI `pjsua2-python`, PJSIP's own stack): signs
in through Confab, gathers ICE candidates with a TURN relay (credentials Confab issued), and
either answers one call or places one; media flows for SECONDS, then the caller hangs up.

  relayed.py --bind ADDR --proxy HOST:PORT --user U --password PW --domain D
             --turn HOST:PORT --turn-user NAME --turn-password PW
             (--answer | --call URI) [--seconds N]

Prints `registered`, `media up`, and at the end `stats rx=<RTP packets received>
tx=<sent> remote=<where the peer's media came from>`; exits 1 when no call came up."""

import argparse
import os
import sys
import time

import pjsua2 as pj


class Call(pj.Call):
    def __init__(self, acc, call_id=pj.PJSUA_INVALID_ID):
        super().__init__(acc, call_id)
        self.up = False
        self.ended = False
        self.stats = None

    def onCallState(self, prm):
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.ended = True

    def onCallMediaState(self, prm):
        info = self.getInfo()  # kept: its media list dies with it
        for m in info.media:
            if m.type == pj.PJMEDIA_TYPE_AUDIO and m.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                if not self.up:
                    print("media up", flush=True)
                self.up = True

    def sample(self):
        """Keeps the latest counts (they vanish with the call)."""
        if not self.up or self.ended:
            return
        try:
            st = self.getStreamStat(0)
            tp = self.getMedTransportInfo(0)
            self.stats = (st.rtcp.rxStat.pkt, st.rtcp.txStat.pkt, tp.srcRtpName)
        except pj.Error:
            pass


class Account(pj.Account):
    def __init__(self):
        super().__init__()
        self.registered = False
        self.incoming = None

    def onRegState(self, prm):
        if prm.code == 200 and not self.registered:
            self.registered = True
            print("registered", flush=True)

    def onIncomingCall(self, prm):
        call = Call(self, prm.callId)
        op = pj.CallOpParam()
        op.statusCode = 200
        call.answer(op)
        self.incoming = call


def main():
    ap = argparse.ArgumentParser()
    for name in ("bind", "proxy", "user", "password", "domain", "turn", "turn-user", "turn-password"):
        ap.add_argument(f"--{name}", required=True)
    ap.add_argument("--answer", action="store_true")
    ap.add_argument("--call")
    ap.add_argument("--seconds", type=float, default=4)
    a = ap.parse_args()

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.logConfig.level = int(os.environ.get("PJ_LOG", "1"))
    cfg.logConfig.consoleLevel = int(os.environ.get("PJ_LOG", "1"))
    cfg.medConfig.clockRate = 8000
    cfg.medConfig.sndClockRate = 8000
    cfg.medConfig.noVad = True  # silence is sent too: RTP flows without a sound card
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    tcfg.boundAddress = a.bind
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()

    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:{a.user}@{a.domain}"
    acfg.regConfig.registrarUri = f"sip:{a.domain}"
    acfg.sipConfig.proxies.append(f"sip:{a.proxy};lr")
    acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", a.user, 0, a.password))
    acfg.mediaConfig.transportConfig.boundAddress = a.bind
    acfg.natConfig.iceEnabled = True
    acfg.natConfig.turnEnabled = True
    acfg.natConfig.turnServer = a.turn
    acfg.natConfig.turnConnType = pj.PJ_TURN_TP_UDP
    acfg.natConfig.turnUserName = a.turn_user
    acfg.natConfig.turnPasswordType = 0
    acfg.natConfig.turnPassword = a.turn_password
    # relay candidates only: the relay reaches no private address, and a CreatePermission
    # naming a host candidate (10.x) with the relay's would be refused as a whole
    acfg.natConfig.iceMaxHostCands = 0
    acc = Account()
    acc.create(acfg)

    deadline = time.time() + 20
    while not acc.registered and time.time() < deadline:
        ep.libHandleEvents(20)
    call = None
    if acc.registered and a.call:
        call = Call(acc)
        call.makeCall(a.call, pj.CallOpParam(True))
    deadline = time.time() + a.seconds + 30
    started = None
    while time.time() < deadline:
        ep.libHandleEvents(20)
        if call is None:
            call = acc.incoming
        if call is None:
            continue
        call.sample()
        if call.up and started is None:
            started = time.time()
        if call.ended:
            break
        if a.call and started is not None and time.time() - started >= a.seconds:
            call.hangup(pj.CallOpParam(True))
            end = time.time() + 2
            while time.time() < end and not call.ended:
                ep.libHandleEvents(20)
            break
    ok = call is not None and call.stats is not None
    if ok:
        rx, tx, remote = call.stats
        print(f"stats rx={rx} tx={tx} remote={remote}", flush=True)
    else:
        print("stats none (no call with media)", flush=True)
    # the binding may crash tearing down a call object Python still holds: leave without it
    sys.stdout.flush()
    os._exit(0 if ok else 1)


if __name__ == "__main__":
    main()
