"""Side-by-side load harness: this plugin against the existing pure-Python one.

    python benches/harness.py            # the full matrix (about an hour on 2 cores)
    python benches/harness.py --quick    # a few seconds: proves the harness works (the tests)

It creates `benches/.venv-upstream` with `livekit-plugins-baseten==1.8.9` (the existing plugin,
with the livekit-agents version this one uses), starts `bench_server.py` in a process of its
own, and runs the same workload (`stt_load.py`) under each plugin's interpreter, alternating
A/B within every configuration, several trials each. Every run is a fresh process.

Reported per configuration, medians of the trials, each net of the driver's own cost (the same
loop pushing into a stream that does nothing, measured alongside):
- client CPU-seconds per hour of audio (per stream), and real-time streams per core;
- p50/p99 lateness of wire frames (send time after the input that completes the frame was
  pushed, real-time runs only),
  p50/p99 delivery of final transcripts (server send -> FINAL_TRANSCRIPT event);
- peak RSS and the longest GC pause;
- stream closes that hung (bounded at 10 s each, so a hang cannot stall or hide in the run);
- the floor: a ready-made 1024-byte WebSocket frame written to a connected socket with a bare
  `write(2)` every 32 ms (the kernel's cost of sending the audio), and how far above it each
  plugin is.
Then the TTS workload (`tts_load.py`): N WebSocket streams, each synthesizing a sentence after
another, the server speaking 24 kHz audio at real time: client CPU-seconds per hour of audio
received, time to first audio, peak RSS, and the floor (bare WebSockets receiving the same).
Writes `benches/results/stt-<time>.md` (both tables) and `.png` (STT CPU per stream against N).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
UPSTREAM_VENV = HERE / ".venv-upstream"
RESULTS = HERE / "results"


@dataclass(frozen=True)
class Config:
    streams: int
    rate: int
    pace: str
    seconds: float


def upstream_python() -> Path:
    python = UPSTREAM_VENV / "bin" / "python"
    if not python.exists():
        agents = version("livekit-agents")
        print(
            f"creating {UPSTREAM_VENV} (livekit-plugins-baseten==1.8.9, livekit-agents=={agents})"
        )
        subprocess.run([sys.executable, "-m", "venv", str(UPSTREAM_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "livekit-plugins-baseten==1.8.9",
             f"livekit-agents=={agents}", "numpy"],
            check=True,
        )  # fmt: skip
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_json(args: list[str], timeout: float) -> dict[str, Any]:
    """Runs one load process and returns the JSON object it prints last; if it fails, its stderr
    is part of the error."""
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{args} exited with {out.returncode}:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run_once(python: Path, plugin: str, url: str, c: Config, final_every: float) -> dict[str, Any]:
    return run_json(
        [str(python), str(HERE / "stt_load.py"), "--plugin", plugin, "--url", url,
         "--streams", str(c.streams), "--rate", str(c.rate), "--pace", c.pace,
         "--seconds", str(c.seconds), "--final-every", str(final_every)],
        timeout=c.seconds * 20 + 120,
    )  # fmt: skip


def run_tts_once(
    python: Path, plugin: str, url: str, streams: int, seconds: float
) -> dict[str, Any]:
    return run_json(
        [str(python), str(HERE / "tts_load.py"), "--plugin", plugin, "--url", url,
         "--streams", str(streams), "--seconds", str(seconds)],
        timeout=seconds * 20 + 120,
    )  # fmt: skip


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run that proves it works")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--streams", type=int, nargs="*", default=[1, 50, 200, 500])
    parser.add_argument("--rates", type=int, nargs="*", default=[16000, 24000, 48000])
    parser.add_argument("--final-every", type=float, default=5.0, help="seconds between finals")
    parser.add_argument("--tts-streams", type=int, nargs="*", default=[1, 50, 200])
    parser.add_argument("--setup-only", action="store_true", help="create the upstream venv, exit")
    args = parser.parse_args()
    if args.setup_only:
        upstream_python()
        return 0
    if args.quick:
        configs = [Config(2, 48000, "realtime", 2.0)]
        trials = 1
        args.final_every = 0.5
        args.tts_streams, args.seconds = [2], 2.0
    else:
        configs = [Config(n, r, "realtime", args.seconds) for n in args.streams for r in args.rates]
        configs += [Config(n, 48000, "fast", args.seconds) for n in (1, 50)]
        trials = args.trials
    ours, theirs = Path(sys.executable), upstream_python()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "bench_server.py"), "--port", str(port),
         "--final-every", str(args.final_every)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"ws://127.0.0.1:{port}/ws"
    try:
        for _ in range(100):  # wait for the server to listen
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        rows = []
        for c in configs:
            runs: dict[str, list[dict[str, Any]]] = {
                "ours": [],
                "existing": [],
                "null": [],
                "raw": [],
            }
            for _ in range(trials):  # alternate A/B, with the baselines in the same trial
                runs["ours"].append(run_once(ours, "baseten", url, c, args.final_every))
                runs["existing"].append(run_once(theirs, "baseten", url, c, args.final_every))
                runs["null"].append(run_once(ours, "null", url, c, args.final_every))
                if c.pace == "realtime":
                    runs["raw"].append(run_once(ours, "raw", url, c, args.final_every))
            rows.append((c, runs))
            print(f"done: {c}", file=sys.stderr)
        tts_url = f"ws://127.0.0.1:{port}/tts"
        tts_rows = []
        for n in args.tts_streams:
            tts_runs: dict[str, list[dict[str, Any]]] = {"ours": [], "existing": [], "raw": []}
            for _ in range(trials):
                tts_runs["ours"].append(run_tts_once(ours, "baseten", tts_url, n, args.seconds))
                tts_runs["existing"].append(
                    run_tts_once(theirs, "baseten", tts_url, n, args.seconds)
                )
                tts_runs["raw"].append(run_tts_once(ours, "raw", tts_url, n, args.seconds))
            tts_rows.append((n, tts_runs))
            print(f"done: TTS x {n}", file=sys.stderr)
    finally:
        server.terminate()
        server.wait()
    report = render(rows, trials)
    if tts_rows:
        report += "\n\n" + render_tts(tts_rows, trials)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"stt-{stamp}.md").write_text(report)
    plot(rows, RESULTS / f"stt-{stamp}.png")
    return 0


def cpu_per_audio_hour(runs: list[dict[str, Any]], null: list[dict[str, Any]]) -> float | None:
    """Client CPU-seconds per hour of audio, net of the driver (medians over trials)."""
    driver = median(null, "cpu_s") or 0.0
    nets = [(r["cpu_s"] - driver) / (r["audio_s"] / 3600) for r in runs]
    return statistics.median(nets) if nets else None


HEADER = [
    "streams",
    "input",
    "pace",
    "CPU-s per audio-hour: ours / existing / ratio",
    "streams per core (ours / existing)",
    "above the raw-send floor (ours / existing)",
    "frame lateness p50/p99 ms (ours; existing)",
    "final delivery p50/p99 ms, trials pooled (ours; existing)",
    "peak RSS MB (ours / existing)",
    "max GC pause ms (ours / existing)",
    "full collections per trial; max young-generation pause ms (ours; existing)",
    "closes that hung (ours / existing)",
]


def fmt(x: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x * scale:.{digits}f}"


def percentiles(runs: dict[str, list[dict[str, Any]]], name: str) -> str:
    """ "p50/p99; p50/p99" in ms for ours and the existing plugin: medians of the trials'."""
    return "; ".join(
        f"{fmt(median(runs[k], name + '_p50'), 1000)}/{fmt(median(runs[k], name + '_p99'), 1000)}"
        for k in ("ours", "existing")
    )


def pooled_percentiles(runs: dict[str, list[dict[str, Any]]], name: str) -> str:
    """ "p50/p99; p50/p99" in ms over the samples of every trial pooled: one stream sees a
    final every few seconds, too few per trial for a p99 of their own."""
    cells = []
    for k in ("ours", "existing"):
        samples = [x for r in runs[k] for x in r.get(name, [])]
        if not samples:
            cells.append("n/a/n/a")
            continue
        p50, p99 = (float(v) for v in np.percentile(samples, [50, 99]))
        cells.append(f"{fmt(p50, 1000)}/{fmt(p99, 1000)}")
    return "; ".join(cells)


def table_head(title: str, header: list[str]) -> list[str]:
    """A title line and the head of a Markdown table."""
    return [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]


def render(rows: list[tuple[Config, dict[str, list[dict[str, Any]]]]], trials: int) -> str:
    lines = table_head(
        f"Medians of {trials} trial(s), alternating A/B; CPU net of the driver's own cost.", HEADER
    )
    for c, runs in rows:
        ours = cpu_per_audio_hour(runs["ours"], runs["null"])
        theirs = cpu_per_audio_hour(runs["existing"], runs["null"])
        floor = cpu_per_audio_hour(runs["raw"], runs["null"]) if runs["raw"] else None
        ratio = f"{ours / theirs:.2f}x" if ours and theirs else "n/a"
        per_core = [f"{3600 / x:.0f}" if x and x > 0 else "n/a" for x in (ours, theirs)]
        above = [
            f"{x / floor:.1f}x" if x and floor and floor > 0 else "n/a" for x in (ours, theirs)
        ]
        cells = [
            str(c.streams),
            f"{c.rate // 1000} kHz",
            c.pace,
            f"{fmt(ours)} / {fmt(theirs)} / **{ratio}**",
            " / ".join(per_core),
            " / ".join(above),
            # lateness is against a real-time schedule: meaningless when pushing at full speed
            percentiles(runs, "lateness") if c.pace == "realtime" else "n/a",
            pooled_percentiles(runs, "final_latencies"),
            " / ".join(fmt(median(runs[k], "peak_rss_mb"), digits=0) for k in ("ours", "existing")),
            " / ".join(fmt(median(runs[k], "gc_max_pause_ms")) for k in ("ours", "existing")),
            "; ".join(
                f"{fmt(median(runs[k], 'gc_full_collections'), digits=0)}, "
                f"{fmt(median(runs[k], 'gc_max_young_pause_ms'))}"
                for k in ("ours", "existing")
            ),
            " / ".join(
                str(sum(r.get("hung_closes", 0) for r in runs[k])) for k in ("ours", "existing")
            ),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


TTS_HEADER = [
    "streams",
    "CPU-s per audio-hour: ours / existing / ratio",
    "above the raw-receive floor (ours / existing)",
    "time to first audio p50/p99 ms (ours; existing)",
    "peak RSS MB (ours / existing)",
]


def render_tts(rows: list[tuple[int, dict[str, list[dict[str, Any]]]]], trials: int) -> str:
    lines = table_head(
        f"TTS over WebSocket, 24 kHz audio at real time; medians of {trials} trial(s), A/B.",
        TTS_HEADER,
    )
    for n, runs in rows:
        ours, theirs, floor = (cpu_per_audio_hour(runs[k], []) for k in ("ours", "existing", "raw"))
        ratio = f"{ours / theirs:.2f}x" if ours and theirs else "n/a"
        above = [f"{x / floor:.1f}x" if x and floor else "n/a" for x in (ours, theirs)]
        cells = [
            str(n),
            f"{fmt(ours)} / {fmt(theirs)} / **{ratio}**",
            " / ".join(above),
            percentiles(runs, "ttfb"),
            " / ".join(fmt(median(runs[k], "peak_rss_mb"), digits=0) for k in ("ours", "existing")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[tuple[Config, dict[str, list[dict[str, Any]]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for rate in sorted({c.rate for c, _ in rows if c.pace == "realtime"}):
        picked = [(c, r) for c, r in rows if c.pace == "realtime" and c.rate == rate]
        ns = [c.streams for c, _ in picked]
        for key, style in (("ours", "-o"), ("existing", "--s")):
            ys = [cpu_per_audio_hour(r[key], r["null"]) or float("nan") for _, r in picked]
            ax.plot(ns, ys, style, label=f"{key}, {rate // 1000} kHz")
    ax.set_xlabel("concurrent real-time streams")
    ax.set_ylabel("client CPU-seconds per audio-hour (per stream)")
    ax.set_title("Baseten STT client cost per stream")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
