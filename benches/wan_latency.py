# SPDX-License-Identifier: Apache-2.0

"""Latency as users feel it across a WAN: this plugin and the existing one (1.8.9), side by
side in one run, each behind the same emulated network (tests/wan.py: 80 ms round trips,
20 ms of jitter, by default).

    python benches/wan_latency.py [--rtt 0.08] [--jitter 0.02] [--trials 20] [--turns 5] \
        [--save docs/benchmarks]

Measured, each in fresh processes, A/B alternating:
- TTS: the first text -> the first audio frame, with and without `prewarm()` (the existing
  plugin has no prewarm: both rows measure it as it is), against bench_server.py's `/tts`;
  and the floor, a bare WebSocket opened in advance (the server's first byte plus one RTT);
- STT: the end of speech (the push that completes the audio a final covers) -> the FINAL
  event, against `/ws`, which finalises every second of audio;
- the turn: end of the question -> the reply's first audio, through LiveKit's AgentSession
  on the local server (Whisper tiny.en, eSpeak, the chat stand-in): this plugin through
  `livekit-baseten turn --json`, the existing one through the same `voice_turn.run_turn`
  with its classes. It includes the engines' compute on this machine.
Prints a Markdown table (medians and p99, in ms) and writes it with the samples to
`wan_latency.json` / `wan_latency.md` in `--save DIR`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from harness import free_port, run_json, upstream_python

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
QUESTION = ROOT / "samples" / "question.wav"


@contextlib.contextmanager
def process(args: list[str], ready: str | None = None) -> Iterator[str]:
    """Runs `args` until the block ends; yields its first line of output (after waiting for
    it, when `ready` says what it starts with)."""
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        if ready is not None:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if not line.startswith(ready):
                raise RuntimeError(f"{args[:3]} did not start: {line!r}")
        yield line
    finally:
        proc.terminate()
        proc.wait(10)


def wan(target_port: int, rtt: float, jitter: float) -> contextlib.AbstractContextManager[str]:
    return process(
        [sys.executable, "-m", "tests.wan", "--target-port", str(target_port),
         "--rtt", str(rtt), "--jitter", str(jitter)],
        ready="",
    )  # fmt: skip


def wait_listening(port: int, timeout: float = 60.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port}")


def probe(python: Path, plugin: str, what: str, url: str, trials: int) -> list[float]:
    result = run_json(
        [str(python), str(HERE / "wan_probe.py"), "--plugin", plugin, "--what", what,
         "--url", url, "--trials", str(trials)],
        timeout=trials * 10 + 120,
    )  # fmt: skip
    samples: list[float] = result["samples"]
    return samples


def turn(python: Path | None, local_url: str, question: Path) -> float | None:
    """One turn's end of question -> first reply audio: ours through the CLI (python None),
    the existing plugin's through the same run_turn; None when no reply came within 30 s
    (the existing plugin's STT sends no END_OF_SPEECH, which ends a turn under LiveKit's STT
    turn detection)."""
    urls = {
        "stt": f"{local_url.replace('http', 'ws')}/whisper/websocket",
        "tts": f"{local_url.replace('http', 'ws')}/orpheus/websocket",
        "llm": f"{local_url}/v1",
    }
    if python is None:
        out = subprocess.run(
            [str(Path(sys.executable).parent / "livekit-baseten"), "turn", "--json",
             "-i", str(question), "-o", os.devnull, "--stt-endpoint", urls["stt"],
             "--tts-endpoint", urls["tts"], "--llm-base-url", urls["llm"]],
            capture_output=True, text=True, timeout=180,
            env={**os.environ, "BASETEN_API_KEY": "local"},
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"livekit-baseten turn failed:\n{out.stderr}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    else:
        try:
            result = run_json(
                [str(python), str(HERE / "wan_turn.py"), "--question", str(question),
                 "--stt", urls["stt"], "--tts", urls["tts"], "--llm", urls["llm"],
                 "--timeout", "30"],
                timeout=180,
            )  # fmt: skip
        except RuntimeError as e:
            if "TimeoutError" not in str(e):
                raise
            return None
    if result.get("errors"):
        raise RuntimeError(f"turn errors: {result['errors']}")
    e2e: float = result["end_to_end_s"]
    return e2e


def summary(samples: list[float]) -> dict[str, float | int]:
    return {
        "n": len(samples),
        "p50_ms": round(statistics.median(samples) * 1000, 1),
        "p99_ms": round(float(np.percentile(samples, 99)) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtt", type=float, default=0.08)
    parser.add_argument("--jitter", type=float, default=0.02)
    parser.add_argument("--trials", type=int, default=20, help="per TTS probe; STT seconds")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds of each probe")
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--save", type=Path, default=None)
    args = parser.parse_args()
    plugins = {"ours": Path(sys.executable), "existing": upstream_python()}
    samples: dict[str, list[float]] = {}
    no_reply: set[str] = set()  # plugins whose turn never got a reply

    def add(key: str, values: list[float]) -> None:
        samples.setdefault(key, []).extend(values)

    bench_port = free_port()
    with (
        process(
            [sys.executable, str(HERE / "bench_server.py"), "--port", str(bench_port),
             "--final-every", "1", "--announce"],
            ready="listening",
        ),
        wan(bench_port, args.rtt, args.jitter) as proxy_port,
    ):  # fmt: skip
        tts_url = f"ws://127.0.0.1:{proxy_port}/tts"
        stt_url = f"ws://127.0.0.1:{proxy_port}/ws"
        for r in range(args.rounds):
            add("tts floor", probe(plugins["ours"], "raw", "tts", tts_url, args.trials))
            for name in ["ours", "existing"] if r % 2 == 0 else ["existing", "ours"]:
                python = plugins[name]
                for what in ("tts", "tts-prewarm"):
                    add(f"{what} {name}", probe(python, "baseten", what, tts_url, args.trials))
                add(f"stt {name}", probe(python, "baseten", "stt", stt_url, args.trials))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    if args.turns:
        local_port = free_port()
        with (
            process(
                [str(Path(sys.executable).parent / "livekit-baseten"), "serve",
                 "--port", str(local_port)],
            ),
        ):  # fmt: skip
            wait_listening(local_port)
            with wan(local_port, args.rtt, args.jitter) as proxy_port:
                local_url = f"http://127.0.0.1:{proxy_port}"
                for t in range(args.turns):
                    for name in ["ours", "existing"] if t % 2 == 0 else ["existing", "ours"]:
                        driver = None if name == "ours" else plugins[name]
                        if name in no_reply:
                            continue  # it never replies: once is enough to show it
                        if (e2e := turn(driver, local_url, QUESTION)) is None:
                            no_reply.add(name)
                        else:
                            add(f"turn {name}", [e2e])
                    print(f"turn {t + 1}/{args.turns} done", file=sys.stderr)

    rows = [
        ("TTS first text -> first audio, no prewarm", "tts"),
        ("TTS first text -> first audio, after prewarm()", "tts-prewarm"),
        ("STT end of speech -> FINAL", "stt"),
        ("turn: end of question -> first reply audio", "turn"),
    ]
    stats = {key: summary(values) for key, values in samples.items()}
    lines = [
        f"RTT {args.rtt * 1000:.0f} ms, jitter +-{args.jitter * 1000:.0f} ms "
        f"(tests/wan.py), medians / p99 in ms",
        "",
        "| | ours p50 | ours p99 | existing p50 | existing p99 | ours / existing (p50) |",
        "|---|---|---|---|---|---|",
    ]
    for label, key in rows:
        ours, theirs = stats.get(f"{key} ours"), stats.get(f"{key} existing")
        if ours is None:
            continue
        if theirs is None:
            why = "no reply" if key == "turn" and "existing" in no_reply else "n/a"
            lines.append(f"| {label} | {ours['p50_ms']} | {ours['p99_ms']} | {why} | {why} | |")
            continue
        lines.append(
            f"| {label} | {ours['p50_ms']} | {ours['p99_ms']} | {theirs['p50_ms']} | "
            f"{theirs['p99_ms']} | {ours['p50_ms'] / theirs['p50_ms']:.2f} |"
        )
    floor = stats.get("tts floor")
    if floor is not None:
        lines.append(
            f"\nTTS floor (a bare WebSocket opened in advance: the server's first byte + one "
            f"RTT): p50 {floor['p50_ms']} ms, p99 {floor['p99_ms']} ms; ours after prewarm() "
            f"/ floor (p50): {stats['tts-prewarm ours']['p50_ms'] / floor['p50_ms']:.2f}"
        )
    table = "\n".join(lines)
    print(table)
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        conditions = {"rtt_s": args.rtt, "jitter_s": args.jitter, "cpus": os.cpu_count()}
        data: dict[str, Any] = {"conditions": conditions, "stats": stats, "samples": samples}
        data["no_reply"] = sorted(no_reply)
        (args.save / "wan_latency.json").write_text(json.dumps(data, indent=1))
        (args.save / "wan_latency.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
