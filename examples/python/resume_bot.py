#!/usr/bin/env python3
"""A tickwire bot that never loses a tick silently, in ~100 lines of Python.

The same resume logic as the Rust crate tickwire-client: remember the last
seq of each symbol and the epoch; on every reconnect (full-jitter backoff)
subscribe with `from` + `epoch`; drop duplicates; fetch from /api/history
what the server could not replay; report every hole as a GAP with its exact
seqs. Needs `pip install websockets` (>= 13). Kept short: symbols are
named (no "*") and few enough for one request under the server's 4 KiB
message limit; the Rust crate splits big resumes and paces its requests.

    python3 examples/python/resume_bot.py ws://127.0.0.1:8080/ws AAPL,MSFT
"""
import asyncio, json, random, sys, time, urllib.parse, urllib.request
from decimal import Decimal

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

URL = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8080/ws"
SYMBOLS = (sys.argv[2] if len(sys.argv) > 2 else "AAPL,MSFT,BTC-USD").split(",")
HTTP = "http://" + URL.split("://", 1)[1].split("/", 1)[0]
BASE, CAP, STABLE = 0.25, 20.0, 10.0  # delay in [0, min(CAP, BASE * 2**n)]
FINAL = {1002, 1003, 1007, 1009, 1010}  # protocol errors: never retried

last = {}  # symbol -> last seq delivered, in `epoch`
epoch = None
stats = {"ticks": 0, "gaps": 0, "missed": 0, "reconnects": 0}


def on_tick(m):
    """Each seq once, in order; a jump is a GAP naming exactly what is missing."""
    sym, seq = m["sym"], m["seq"]
    prev = last.get(sym)
    if prev is not None and seq <= prev:
        return  # a duplicate (a replay overlapping what we have)
    if prev is not None and seq > prev + 1:
        stats["gaps"] += 1
        stats["missed"] += seq - prev - 1
        print(f"GAP {sym} {prev + 1}..={seq - 1}")
    last[sym] = seq
    stats["ticks"] += 1
    if stats["ticks"] % 1000 == 0:
        print(f"-- {stats}; {sym} #{seq} px {m['px']}")  # px is an exact Decimal


def fill_from_history(sym):
    """The server could not replay `sym` on the socket (its queue bound, or
    the history is too short): fetch what /api/history still holds. True if
    nothing is missing any more."""
    gaps = stats["gaps"]
    while True:
        q = urllib.parse.urlencode({"symbol": sym, "from": last[sym], "limit": 1000})
        with urllib.request.urlopen(f"{HTTP}/api/history?{q}", timeout=10) as r:
            page = json.loads(r.read(), parse_float=Decimal)
        if page["epoch"] != epoch:
            return False
        for t in page["ticks"]:
            on_tick(t)
        if not page["ticks"] or last[sym] >= page["last_seq"]:
            return stats["gaps"] == gaps and last[sym] >= page["last_seq"]


async def session(ws):
    global epoch
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert welcome["type"] == "welcome", welcome
    if epoch is not None and welcome["epoch"] != epoch:
        print("server restarted (new epoch): old seqs mean nothing, none recovered")
        last.clear()
    epoch = welcome["epoch"]
    stall = 3 * welcome["heartbeat_ms"] / 1000  # silence this long = dead link
    req = {"op": "subscribe", "symbols": SYMBOLS, "id": 1}
    if last:
        req.update({"from": dict(last), "epoch": epoch})
    await ws.send(json.dumps(req))
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), stall), parse_float=Decimal)
        kind = m["type"]
        if kind in ("tick", "snapshot"):
            on_tick(m)
        elif kind == "subscribed" and m.get("id") == 1:
            SYMBOLS[:] = m["symbols"]  # unknown names are not asked for again
            for sym, ok in m.get("recovered", {}).items():
                ok = ok or await asyncio.to_thread(fill_from_history, sym)
                print(f"resumed {sym}: {'no hole' if ok else 'ticks lost (GAP above)'}")
        elif kind == "error":
            print(f"refused: {m['code']}: {m['message']}")


async def main():
    attempt = 0
    while True:
        started = time.monotonic()
        try:
            # max_queue bounds what waits unread; if the bot is slower than
            # the feed, TCP backpressure lets the server apply its policy.
            async with connect(URL, max_queue=64) as ws:
                await session(ws)
        except ConnectionClosed as e:
            code, reason = (e.rcvd.code, e.rcvd.reason) if e.rcvd else (1006, "lost")
            print(f"closed {code} {reason!r}")
            if code in FINAL or 4000 <= code < 5000:
                return
        except InvalidStatus as e:
            status = e.response.status_code
            print(f"upgrade refused: HTTP {status}")
            if 400 <= status < 500 and status != 429:
                return
        except (OSError, asyncio.TimeoutError) as e:
            print(f"connection lost: {e!r}")  # incl. the stall watchdog
        if time.monotonic() - started >= STABLE:
            attempt = 0  # a stable connection: start the backoff over
        delay = random.uniform(0, min(CAP, BASE * 2**attempt))
        attempt += 1
        stats["reconnects"] += 1
        print(f"reconnecting in {delay:.2f} s")
        await asyncio.sleep(delay)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print(f"bye: {stats}")
