# SPDX-License-Identifier: Apache-2.0

"""Side-by-side load harness: this plugin against the existing pure-Python one.

    python benches/harness.py            # the full matrix (about an hour on 2 cores)
    python benches/harness.py --quick    # a few seconds: proves the harness works (the tests)
    python benches/harness.py --save docs/benchmarks   # the data and plots the docs show

It creates `benches/.venv-upstream` with `livekit-plugins-baseten==1.8.9` (the existing plugin,
with the livekit-agents version this one uses), starts `bench_server.py` in a process of its
own, and runs the same workload (`stt_load.py`) under each plugin's interpreter, alternating
A/B within every configuration, several trials each. Every run is a fresh process.

Reported per configuration, medians of the trials, each net of the driver's own cost (the same
loop pushing into a stream that does nothing, measured alongside):
- client CPU-seconds per hour of audio (per stream), and real-time streams per core, over a
  window that holds every stream's whole life: its construction, the connection's handshake,
  the audio, the finals and the close;
- the whole client process's CPU, counted from outside (start-up, imports, the window, the
  HTTP session's close, exit), as is and net of the driver's whole process: what the window
  leaves out is the process's fixed cost, mostly importing livekit-agents and the plugin;
- p50/p99 lateness of wire frames (send time after the input that completes the frame was
  pushed, real-time runs only),
  p50/p99 delivery of final transcripts (server send -> FINAL_TRANSCRIPT event);
- peak RSS and the longest GC pause;
- stream closes that hung (bounded at 10 s each, so a hang cannot stall or hide in the run);
- the floor: a ready-made 1024-byte WebSocket frame written to a connected socket with a bare
  `write(2)` every 32 ms (the kernel's cost of sending the audio), and how far above it each
  plugin is.
The same for Qwen3-ASR (`--qwen3-streams`, 48 kHz input; the floor is Whisper's only). Then
the TTS workload (`tts_load.py`), on Orpheus and on Qwen3-TTS: N WebSocket streams, each
synthesizing a sentence after another, the server speaking 24 kHz audio at real time: client
CPU-seconds per hour of audio received, time to first audio, peak RSS, and the floor (bare
WebSockets receiving the same).
The figures are written as data, with the conditions they were measured in, to `load.json` in
`--save DIR` (default `benches/results/<time>/`), beside `load.md` (the tables) and the plots
`report.py` draws from the data (`python benches/report.py DIR` redraws them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
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
import report

HERE = Path(__file__).resolve().parent
UPSTREAM_VENV = HERE / ".venv-upstream"
RESULTS = HERE / "results"


@dataclass(frozen=True)
class Config:
    streams: int
    rate: int
    pace: str
    seconds: float
    model: str = "whisper"


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


def children_cpu_s() -> float:
    """CPU-seconds of every child process this one has waited for, all threads included."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_json(args: list[str], timeout: float) -> dict[str, Any]:
    """Runs one load process and returns the JSON object it prints last; if it fails, its stderr
    is part of the error."""
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{args} exited with {out.returncode}:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run_once(python: Path, plugin: str, url: str, c: Config, final_every: float) -> dict[str, Any]:
    before = children_cpu_s()
    result = run_json(
        [str(python), str(HERE / "stt_load.py"), "--plugin", plugin, "--url", url,
         "--streams", str(c.streams), "--rate", str(c.rate), "--pace", c.pace,
         "--seconds", str(c.seconds), "--final-every", str(final_every), "--model", c.model],
        timeout=c.seconds * 20 + 120,
    )  # fmt: skip
    # The whole client process, from exec to exit: the one run since the last wait (the
    # benchmark server, the only other child, is waited for at the very end).
    result["process_cpu_s"] = children_cpu_s() - before
    return result


def run_tts_once(
    python: Path, plugin: str, url: str, streams: int, seconds: float, model: str
) -> dict[str, Any]:
    return run_json(
        [str(python), str(HERE / "tts_load.py"), "--plugin", plugin, "--url", url,
         "--streams", str(streams), "--seconds", str(seconds), "--model", model],
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
    parser.add_argument(
        "--fast-streams", type=int, nargs="*", default=[1, 50], help="48 kHz as fast as taken"
    )
    parser.add_argument("--final-every", type=float, default=5.0, help="seconds between finals")
    parser.add_argument("--tts-streams", type=int, nargs="*", default=[1, 50, 200])
    parser.add_argument(
        "--qwen3-streams", type=int, nargs="*", default=[1, 50, 200], help="Qwen3-ASR, 48 kHz"
    )
    parser.add_argument("--qwen3-tts-streams", type=int, nargs="*", default=[1, 50])
    parser.add_argument("--setup-only", action="store_true", help="create the upstream venv, exit")
    parser.add_argument(
        "--save", type=Path, metavar="DIR", help="write load.json and the plots here"
    )
    args = parser.parse_args()
    if args.setup_only:
        upstream_python()
        return 0
    if args.quick:
        configs = [Config(2, 48000, "realtime", 1.0, m) for m in ("whisper", "qwen3-asr")]
        trials = 1
        args.final_every = 0.5
        args.tts_streams, args.qwen3_tts_streams, args.seconds = [2], [2], 1.0
    else:
        configs = [Config(n, r, "realtime", args.seconds) for n in args.streams for r in args.rates]
        configs += [Config(n, 48000, "fast", args.seconds) for n in args.fast_streams]
        configs += [
            Config(n, 48000, "realtime", args.seconds, "qwen3-asr") for n in args.qwen3_streams
        ]
        trials = args.trials
    out: Path = args.save or RESULTS / time.strftime("%Y%m%d-%H%M%S")
    ours, theirs = Path(sys.executable), upstream_python()
    port = free_port()
    # The quick run's TTS server speaks as fast as it can: a sentence at real time would outlast
    # the whole run.
    server = subprocess.Popen(
        [sys.executable, str(HERE / "bench_server.py"), "--port", str(port),
         "--final-every", str(args.final_every), "--tts-speed", "0" if args.quick else "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"ws://127.0.0.1:{port}"
    stt_paths = {"whisper": "/ws", "qwen3-asr": "/qwen3"}
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
            stt_url = url + stt_paths[c.model]
            for _ in range(trials):  # alternate A/B, with the baselines in the same trial
                runs["ours"].append(run_once(ours, "baseten", stt_url, c, args.final_every))
                runs["existing"].append(run_once(theirs, "baseten", stt_url, c, args.final_every))
                runs["null"].append(run_once(ours, "null", stt_url, c, args.final_every))
                if c.pace == "realtime" and c.model == "whisper":
                    runs["raw"].append(run_once(ours, "raw", stt_url, c, args.final_every))
            rows.append((c, runs))
            print(f"done: {c}", file=sys.stderr)
            # What is done so far, in case a long matrix is stopped.
            partial = {"schema": report.LOAD_SCHEMA, "stt": stt_rows(rows, trials), "tts": []}
            report.save(partial, out / "load.partial.json")
        tts_rows = []
        tts_configs = [(n, "orpheus", "/tts") for n in args.tts_streams]
        tts_configs += [(n, "qwen3-tts", "/qwen3-tts") for n in args.qwen3_tts_streams]
        for n, model, route in tts_configs:
            tts_runs: dict[str, list[dict[str, Any]]] = {"ours": [], "existing": [], "raw": []}
            for _ in range(trials):
                for key, python, plugin in (
                    ("ours", ours, "baseten"),
                    ("existing", theirs, "baseten"),
                    ("raw", ours, "raw"),
                ):
                    tts_runs[key].append(
                        run_tts_once(python, plugin, url + route, n, args.seconds, model)
                    )
            tts_rows.append((n, model, tts_runs))
            print(f"done: TTS {model} x {n}", file=sys.stderr)
    finally:
        server.terminate()
        server.wait()
    data: dict[str, Any] = {
        "schema": report.LOAD_SCHEMA,
        "conditions": measured_conditions(args, theirs),
        "stt": stt_rows(rows, trials),
        "tts": [tts_row(n, model, runs, trials, args.seconds) for n, model, runs in tts_rows],
    }
    tables = report.render_stt(data["stt"])
    if data["tts"]:
        tables += "\n\n" + report.render_tts(data["tts"])
    print(tables)
    report.save(data, out / "load.json")
    (out / "load.partial.json").unlink(missing_ok=True)
    (out / "load.md").write_text(f"{report.conditions(data)}\n\n{tables}\n")
    for path in report.plot_load(data, out):
        print(f"wrote {path}", file=sys.stderr)
    return 0


def stt_rows(rows: list[tuple[Config, dict[str, list[dict[str, Any]]]]], trials: int) -> list[Any]:
    """The STT configurations as data: by model, real-time first, by streams then rate."""

    def order(c: Config) -> tuple[bool, bool, int, int]:
        return c.model != "whisper", c.pace != "realtime", c.streams, c.rate

    return [stt_row(c, runs, trials) for c, runs in sorted(rows, key=lambda cr: order(cr[0]))]


def cpu_per_audio_hour(
    runs: list[dict[str, Any]], null: list[dict[str, Any]], key: str = "cpu_s"
) -> float | None:
    """Client CPU-seconds per hour of audio, net of the driver (medians over trials)."""
    driver = median(null, key) or 0.0
    nets = [(r[key] - driver) / (r["audio_s"] / 3600) for r in runs if r.get(key) is not None]
    return statistics.median(nets) if nets else None


def by_plugin(runs: dict[str, list[dict[str, Any]]], key: str) -> dict[str, float | None]:
    """The trials' median of `key`, for ours and the existing plugin."""
    return {k: median(runs[k], key) for k in report.PLUGINS}


def percentiles_ms(runs: dict[str, list[dict[str, Any]]], name: str) -> dict[str, Any]:
    """p50/p99 in ms for ours and the existing plugin: medians of the trials'."""
    out: dict[str, Any] = {}
    for k in report.PLUGINS:
        p50, p99 = median(runs[k], name + "_p50"), median(runs[k], name + "_p99")
        out[k] = {"p50": _ms(p50), "p99": _ms(p99)}
    return out


def pooled_percentiles_ms(runs: dict[str, list[dict[str, Any]]], name: str) -> dict[str, Any]:
    """p50/p99 in ms over the samples of every trial pooled: one stream sees a final every few
    seconds, too few per trial for a p99 of their own."""
    out: dict[str, Any] = {}
    for k in report.PLUGINS:
        samples = [x for r in runs[k] for x in r.get(name, [])]
        if not samples:
            out[k] = {"p50": None, "p99": None}
            continue
        p50, p99 = (float(v) * 1000 for v in np.percentile(samples, [50, 99]))
        out[k] = {"p50": p50, "p99": p99}
    return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b and b > 0 else None


def stt_row(c: Config, runs: dict[str, list[dict[str, Any]]], trials: int) -> dict[str, Any]:
    """One STT configuration as data: every figure of the table, unrounded."""
    cpu = {k: cpu_per_audio_hour(runs[k], runs["null"]) for k in report.PLUGINS}
    floor = cpu_per_audio_hour(runs["raw"], runs["null"]) if runs["raw"] else None
    # The whole client process (start-up, imports, the window, the close, exit), as is and
    # net of the driver's whole process.
    process = {k: cpu_per_audio_hour(runs[k], [], "process_cpu_s") for k in report.PLUGINS}
    process_net = {
        k: cpu_per_audio_hour(runs[k], runs["null"], "process_cpu_s") for k in report.PLUGINS
    }
    outside = {
        k: median(
            [{"x": r["process_cpu_s"] - r["cpu_s"]} for r in runs[k] if "process_cpu_s" in r],
            "x",
        )
        for k in (*report.PLUGINS, "null")
    }
    return {
        "model": c.model,
        "streams": c.streams,
        "rate_hz": c.rate,
        "pace": c.pace,
        "trials": trials,
        "seconds": c.seconds,
        "cpu_s_per_audio_hour": cpu,
        "cpu_ratio": _ratio(cpu["ours"], cpu["existing"]),
        "process_cpu_s_per_audio_hour": process,
        "process_cpu_ratio": _ratio(process["ours"], process["existing"]),
        "process_net_cpu_s_per_audio_hour": process_net,
        "process_net_cpu_ratio": _ratio(process_net["ours"], process_net["existing"]),
        "cpu_s_outside_window": outside,
        "floor_cpu_s_per_audio_hour": floor,
        "above_floor": {k: _ratio(cpu[k], floor) for k in report.PLUGINS},
        "streams_per_core": {k: 3600 / x if x and x > 0 else None for k, x in cpu.items()},
        # lateness is against a real-time schedule: meaningless when pushing at full speed
        "frame_lateness_ms": percentiles_ms(runs, "lateness") if c.pace == "realtime" else None,
        "final_delivery_ms": pooled_percentiles_ms(runs, "final_latencies"),
        "peak_rss_mb": by_plugin(runs, "peak_rss_mb"),
        "gc_max_pause_ms": by_plugin(runs, "gc_max_pause_ms"),
        "gc_full_collections": by_plugin(runs, "gc_full_collections"),
        "gc_max_young_pause_ms": by_plugin(runs, "gc_max_young_pause_ms"),
        "hung_closes": {k: sum(r.get("hung_closes", 0) for r in runs[k]) for k in report.PLUGINS},
    }


def tts_row(
    n: int, model: str, runs: dict[str, list[dict[str, Any]]], trials: int, seconds: float
) -> dict[str, Any]:
    cpu = {k: cpu_per_audio_hour(runs[k], []) for k in report.PLUGINS}
    floor = cpu_per_audio_hour(runs["raw"], [])
    return {
        "model": model,
        "streams": n,
        "trials": trials,
        "seconds": seconds,
        "cpu_s_per_audio_hour": cpu,
        "cpu_ratio": _ratio(cpu["ours"], cpu["existing"]),
        "floor_cpu_s_per_audio_hour": floor,
        "above_floor": {k: _ratio(cpu[k], floor) for k in report.PLUGINS},
        "ttfb_ms": percentiles_ms(runs, "ttfb"),
        "peak_rss_mb": by_plugin(runs, "peak_rss_mb"),
    }


def measured_conditions(args: argparse.Namespace, theirs: Path) -> dict[str, Any]:
    """Where and how the figures were measured, stored with them."""
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    existing = subprocess.run(
        [str(theirs), "-c", "from importlib.metadata import version as v; "
         "print(v('livekit-plugins-baseten'))"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    return {
        "source": "benches/harness.py" + (" --quick" if args.quick else ""),
        "measured": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs ({cpu_model}), "
        f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "livekit_agents": version("livekit-agents"),
        "ours": f"livekit-plugins-baseten {version('livekit-plugins-baseten')} (this repository)",
        "existing": f"livekit-plugins-baseten=={existing or 'unknown'}",
        "final_every_s": args.final_every,
        "notes": [],
    }


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
