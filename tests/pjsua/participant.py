#!/usr/bin/env python3
"""A PJSIP participant for the meeting tests (PyPI `pjsua2-python`: PJSIP's own Python binding,
an independently written SIP stack): calls a meeting through Confab with digest credentials,
plays a WAV file into the call and records what it hears, then hangs up.

  participant.py --proxy HOST:PORT --user USER --password PW --domain DOMAIN --call URI
                 --play FILE.wav --record FILE.wav --seconds N

Prints `joined` once the call's audio is up and `done <status>` at the end; exits 1 when the
call never came up."""

import argparse
import sys
import time

import pjsua2 as pj


class Call(pj.Call):
    def __init__(self, acc, player, recorder):
        super().__init__(acc)
        self.player = player
        self.recorder = recorder
        self.up = False

    def onCallMediaState(self, prm):
        info = self.getInfo()
        for i, m in enumerate(info.media):
            if m.type == pj.PJMEDIA_TYPE_AUDIO and m.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                aud = self.getAudioMedia(i)
                self.player.startTransmit(aud)
                aud.startTransmit(self.recorder)
                self.up = True
                print("joined", flush=True)


def main():
    ap = argparse.ArgumentParser()
    for name in ("proxy", "user", "password", "domain", "call", "play", "record"):
        ap.add_argument(f"--{name}", required=True)
    ap.add_argument("--seconds", type=float, default=6)
    a = ap.parse_args()

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    cfg.medConfig.clockRate = 8000
    cfg.medConfig.sndClockRate = 8000
    cfg.medConfig.noVad = True
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    tcfg.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()

    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:{a.user}@{a.domain}"
    acfg.sipConfig.proxies.append(f"sip:{a.proxy};lr")
    acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", a.user, 0, a.password))
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    acfg.mediaConfig.transportConfig.port = 0
    acc = pj.Account()
    acc.create(acfg)

    player = pj.AudioMediaPlayer()
    player.createPlayer(a.play, pj.PJMEDIA_FILE_NO_LOOP)
    recorder = pj.AudioMediaRecorder()
    recorder.createRecorder(a.record)
    call = Call(acc, player, recorder)
    call.makeCall(a.call, pj.CallOpParam(True))
    deadline = time.time() + a.seconds + 10
    started = None
    while time.time() < deadline:
        ep.libHandleEvents(20)
        if call.up and started is None:
            started = time.time()
        if started is not None and time.time() - started >= a.seconds:
            break
    status = "never joined"
    if call.up:
        status = "ok"
        call.hangup(pj.CallOpParam(True))
        end = time.time() + 2
        while time.time() < end:
            ep.libHandleEvents(20)
    print(f"done {status}", flush=True)
    del call
    del recorder
    del player
    ep.libDestroy()
    sys.exit(0 if status == "ok" else 1)


if __name__ == "__main__":
    main()
