"""A pjsua2 peer for the end-to-end tests, run as its own process (PJSIP's threads and
pytest do not mix): `python pjsua_peer.py uas|uac ...`.

- `uas`: a trunk account on --port that answers the first incoming call (180, then 200),
  waits for the caller's BYE, and exits.
- `uac`: a dialer account on --port whose outbound proxy is --proxy; it calls --target,
  holds the confirmed call for --hold seconds, hangs up, and exits.

Each prints one JSON object per line on stdout ({"event": ...}); the first is "ready".
The exit code is 0 only when the call was confirmed and then disconnected cleanly; every
wait is bounded by --deadline. No audio device: PJSIP's null device.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import pjsua2 as pj


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": round(time.monotonic(), 3), **fields}), flush=True)


class Call(pj.Call):  # type: ignore[misc]
    def __init__(self, account: pj.Account, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self.confirmed = False
        self.disconnected = False
        self.last_status = 0

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        self.last_status = int(info.lastStatusCode)
        emit("state", state=info.stateText, status=self.last_status, reason=info.lastReason,
             call_id=info.callIdString)
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed = True
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True


class Account(pj.Account):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        call = Call(self, prm.callId)
        self.calls.append(call)
        emit("incoming", call_id=call.getInfo().callIdString,
             request=prm.rdata.wholeMsg.split("\r\n", 1)[0])
        ringing = pj.CallOpParam()
        ringing.statusCode = 180
        call.answer(ringing)
        ok = pj.CallOpParam()
        ok.statusCode = 200
        call.answer(ok)


def run(args: argparse.Namespace) -> None:
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.maxCalls = 4
    cfg.uaConfig.userAgent = f"sipguard-e2e-{args.role}"
    cfg.logConfig.level = 5
    cfg.logConfig.consoleLevel = 0
    cfg.logConfig.filename = args.log
    cfg.medConfig.noVad = True
    ep.libInit(cfg)

    tcfg = pj.TransportConfig()
    tcfg.port = args.port
    tcfg.boundAddress = "127.0.0.1"
    tcfg.publicAddress = "127.0.0.1"
    transport_id = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()

    acfg = pj.AccountConfig()
    acfg.sipConfig.transportId = transport_id
    acfg.mediaConfig.transportConfig.port = args.media_port
    acfg.mediaConfig.transportConfig.portRange = 10
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    acfg.natConfig.iceEnabled = False
    acfg.natConfig.sdpNatRewriteUse = 0
    acfg.natConfig.contactRewriteUse = 0
    acfg.natConfig.viaRewriteUse = 0
    if args.role == "uas":
        acfg.idUri = f"sip:trunk@127.0.0.1:{args.port}"
    else:
        acfg.idUri = "sip:+13125557000@127.0.0.1"
        if args.proxy:
            acfg.sipConfig.proxies.append(args.proxy)
    account = Account()
    account.create(acfg, True)

    deadline = time.monotonic() + args.deadline
    emit("ready", port=args.port)

    def pump(until: Any) -> bool:
        while time.monotonic() < deadline:
            if until():
                return True
            ep.libHandleEvents(10)
        return bool(until())

    ok = False
    try:
        if args.role == "uac":
            call = Call(account)
            account.calls.append(call)
            call.makeCall(args.target, pj.CallOpParam(True))
            if pump(lambda: call.confirmed or call.disconnected) and call.confirmed:
                hold_until = time.monotonic() + args.hold
                pump(lambda: time.monotonic() >= hold_until or call.disconnected)
                if not call.disconnected:
                    call.hangup(pj.CallOpParam())
                    emit("hangup")
                ok = pump(lambda: call.disconnected) and call.confirmed
        else:
            pump(lambda: bool(account.calls) and account.calls[0].disconnected)
            first = account.calls[0] if account.calls else None
            ok = first is not None and first.confirmed and first.disconnected
    finally:
        calls = account.calls
        emit("done", ok=ok, confirmed=[c.confirmed for c in calls],
             disconnected=[c.disconnected for c in calls],
             last_status=[c.last_status for c in calls])
        ep.hangupAllCalls()
        for _ in range(20):
            ep.libHandleEvents(10)
        ep.libDestroy()
        # Leave without running pjsua2's SWIG destructors: after libDestroy() a Call's
        # destructor trips an assertion in pjsua_call_set_user_data() and aborts.
        sys.stdout.flush()
        os._exit(0 if ok else 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["uas", "uac"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--media-port", type=int, required=True)
    parser.add_argument("--proxy", default="", help="outbound proxy URI (uac)")
    parser.add_argument("--target", default="", help="Request-URI to call (uac)")
    parser.add_argument("--hold", type=float, default=1.0)
    parser.add_argument("--deadline", type=float, default=20.0)
    parser.add_argument("--log", default="", help="PJSIP log file")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
