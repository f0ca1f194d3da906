"""`make bench-voice`: N calls through a 1,000-channel simulated SIP trunk, with real RTP.

    python -m bench.voice [--n 10000] [--channels 1000] [--cps 150] [--language nl]

The trunk simulator runs as its own process (`python -m simulators.siptrunk`, every call
answered, RTP checked per call); this process is the dialer: one SIP UAC and one media clock, as
a voice service process has, the alert synthesised once by eSpeak NG and played twice per call.
New calls are started at `--cps` per second while a channel is free. Figures, written to
bench/results/voice.json:

- calls, answered; calls_per_s: calls started per second from the first INVITE to the last;
- max_concurrent: most calls the trunk held at once (its channel count);
- rtp_interval_p99_ms: how late the media clock's ticks ran against the 20 ms grid, 99th pct;
- cpu_us_per_call_s: CPU of both processes per second of call audio sent, in microseconds;
- peak_rss_mb: peak resident memory of both processes;
- lost: numbers never answered; duplicates: numbers whose message was answered more than once;
- rtp_seq_errors, rtp_late_frames: what the trunk's RTP checks counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import uvloop

from gateways.sip import CallOutcome, MediaClock, SipUac, Trunk
from gateways.tts import Espeak, render_prompt

RESULTS = Path("bench/results/voice.json")
TEXT = {
    "nl": "Dit is een test van BE-Alert. Blijf binnen, sluit ramen en deuren.",
    "fr": "Ceci est un test de BE-Alert. Restez à l'intérieur.",
}


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.voice", description=__doc__)
    p.add_argument("--n", type=int, default=10_000, help="calls to place")
    p.add_argument("--channels", type=int, default=1000, help="the trunk's channels")
    p.add_argument("--cps", type=float, default=150.0, help="new calls per second at most")
    p.add_argument("--language", default="nl", choices=sorted(TEXT))
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args()


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    sim = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulators.siptrunk",
        "--port",
        "0",
        "--channels",
        str(args.channels),
        "--ring-delay",
        "0.05",
        "--log-level",
        "WARNING",
        stdout=asyncio.subprocess.PIPE,
    )
    assert sim.stdout is not None
    port = int(json.loads(await sim.stdout.readline())["port"])
    sim_proc = psutil.Process(sim.pid)
    me = psutil.Process()
    prompt = render_prompt(Espeak().speak(text=TEXT[args.language], language=args.language))
    clock = await MediaClock.open()
    uac = await SipUac.open(clock=clock)
    trunk = Trunk(host="127.0.0.1", port=port)
    channels = asyncio.Semaphore(args.channels)
    outcomes: dict[str, int] = {}
    audio_s = 0.0
    peak_rss = 0

    async def one(i: int) -> None:
        nonlocal audio_s
        try:
            result = await uac.call(
                trunk=trunk, number=f"+3240{i:07d}", prompt=prompt, ring_timeout=30
            )
        finally:
            channels.release()
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
        audio_s += result.frames_sent * 0.02

    cpu0 = me.cpu_times()
    sim_cpu0 = sim_proc.cpu_times()
    started = time.monotonic()
    tasks: list[asyncio.Task[None]] = []
    gap = 1.0 / args.cps
    next_at = started
    for i in range(args.n):
        await channels.acquire()
        now = time.monotonic()
        if next_at > now:
            await asyncio.sleep(next_at - now)
        next_at = max(next_at + gap, time.monotonic() - gap)
        tasks.append(asyncio.create_task(one(i)))
        if i % 200 == 0:
            peak_rss = max(peak_rss, me.memory_info().rss + sim_proc.memory_info().rss)
    last_start = time.monotonic()
    while any(not t.done() for t in tasks):
        await asyncio.sleep(0.5)
        peak_rss = max(peak_rss, me.memory_info().rss + sim_proc.memory_info().rss)
    await asyncio.gather(*tasks)
    cpu1, sim_cpu1 = me.cpu_times(), sim_proc.cpu_times()
    cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) + (
        sim_cpu1.user + sim_cpu1.system - sim_cpu0.user - sim_cpu0.system
    )
    lateness = np.array(clock.lateness, dtype=np.float64) * 1000
    uac.close()
    await clock.close()
    sim.terminate()
    out, _ = await asyncio.wait_for(sim.communicate(), 60)
    stopped = json.loads(out.decode().strip().splitlines()[-1])
    peak_rss = max(peak_rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    answered = outcomes.get(CallOutcome.ANSWERED, 0)
    return {
        "calls": args.n,
        "answered": answered,
        "calls_per_s": round(args.n / max(last_start - started, 1e-9), 1),
        "max_concurrent": int(stopped["max_concurrent"]),
        "rtp_interval_p99_ms": round(float(np.percentile(lateness, 99)), 3) if lateness.size else 0,
        "cpu_us_per_call_s": round(cpu / max(audio_s, 1e-9) * 1e6, 1),
        "peak_rss_mb": round(peak_rss / 2**20, 1),
        "lost": args.n - int(stopped["answered"]) + int(stopped["numbers_answered_twice"]),
        "duplicates": int(stopped["numbers_answered_twice"]),
        "message_s": round(len(prompt.pcma) * 0.02, 2),
        "audio_s": round(audio_s, 1),
        "rtp_seq_errors": int(stopped["seq_errors"]),
        "rtp_late_frames": int(stopped["late_frames"]),
        "rtp_dropped_packets": clock.dropped,
        "sip_retransmissions": uac.stats.retransmissions,
        "wall_s": round(time.monotonic() - started, 1),
    }


def main() -> None:
    """Run the benchmark, print and write the figures."""
    args = _args()
    figures = uvloop.run(_bench(args))
    print(json.dumps(figures, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
