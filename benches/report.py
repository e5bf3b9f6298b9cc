# SPDX-License-Identifier: Apache-2.0

"""Benchmark results as data: the JSON files the benchmarks write, and the tables and plots
drawn from them.

    python benches/report.py docs/benchmarks              # redraw the plots from the data there
    python benches/report.py docs/benchmarks --markdown   # and print the tables
    python benches/report.py docs/benchmarks --no-plots --check README.md docs/benchmarks.md

The data files (`--save DIR` of `harness.py` and `native_vs_python.py`):
- `load.json`: the side-by-side load harness, one row per STT configuration and per TTS stream
  count, each figure a median over trials, and the conditions it was measured in;
- `hot-paths.json`: `native_vs_python.py`, per-call timings of the hot paths;
- `criterion.json` (optional): `cargo bench` medians, written by hand from criterion's output.
Plots written beside them: `cpu-ratio.png` (the headline: client CPU of this plugin over the
existing one's), `stt-cpu-per-stream.png` and `hot-paths.png`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

LOAD_SCHEMA = "livekit-plugins-baseten/load/1"
HOT_PATHS_SCHEMA = "livekit-plugins-baseten/hot-paths/1"
CRITERION_SCHEMA = "livekit-plugins-baseten/criterion/1"
PLUGINS = ("ours", "existing")

Row = dict[str, Any]
# Rows measured before the harness ran Qwen3 carry no model: they are Whisper's and Orpheus'.
STT_MODELS = {"whisper": "", "qwen3-asr": " on Qwen3-ASR"}
TTS_MODELS = {"orpheus": "TTS", "qwen3-tts": "Qwen3-TTS"}


def stt_model(row: Row) -> str:
    model: str = row.get("model", "whisper")
    return model


def tts_model(row: Row) -> str:
    model: str = row.get("model", "orpheus")
    return model


def save(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def load(path: Path, schema: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    if data.get("schema") != schema:
        raise ValueError(f"{path}: expected schema {schema!r}, found {data.get('schema')!r}")
    return data


def fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def pair(row: Row, key: str, digits: int = 1, sep: str = " / ") -> str:
    """Ours and the existing plugin's figure, "ours / existing"."""
    value = row.get(key) or {}
    return sep.join(fmt(value.get(k), digits) for k in PLUGINS)


def percentile_pair(row: Row, key: str) -> str:
    """ "p50/p99; p50/p99" for ours and the existing plugin, or "n/a" when not measured."""
    value = row.get(key)
    if value is None:
        return "n/a"
    return "; ".join(
        f"{fmt((value.get(k) or {}).get('p50'))}/{fmt((value.get(k) or {}).get('p99'))}"
        for k in PLUGINS
    )


def cpu_cell(row: Row) -> str:
    """ "ours / existing / **ratio**", CPU-seconds per audio-hour."""
    cpu = row["cpu_s_per_audio_hour"]
    return f"{fmt(cpu.get('ours'))} / {fmt(cpu.get('existing'))} / **{ratio(row['cpu_ratio'])}**"


def process_cell(row: Row) -> str:
    """The whole client process: "ours / existing / **ratio**; net of the driver ratio"."""
    cpu = row.get("process_cpu_s_per_audio_hour")
    if not cpu:
        return "n/a"
    return (
        f"{fmt(cpu.get('ours'))} / {fmt(cpu.get('existing'))} / "
        f"**{ratio(row.get('process_cpu_ratio'))}**; "
        f"net {ratio(row.get('process_net_cpu_ratio'))}"
    )


def above_floor(row: Row) -> str:
    """How many times the floor's CPU each plugin spends, "ours / existing"."""
    value = row.get("above_floor") or {}
    return " / ".join("n/a" if value.get(k) is None else f"{value[k]:.1f}x" for k in PLUGINS)


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


STT_HEADER = [
    "streams",
    "input",
    "pace",
    "CPU-s per audio-hour: ours / existing / ratio",
    "whole process, CPU-s per audio-hour: ours / existing / ratio; net of the driver",
    "streams per core (ours / existing)",
    "above the raw-send floor (ours / existing)",
    "frame lateness p50/p99 ms (ours; existing)",
    "final delivery p50/p99 ms, trials pooled (ours; existing)",
    "peak RSS MB (ours / existing)",
    "max GC pause ms (ours / existing)",
    "full collections per trial; max young-generation pause ms (ours; existing)",
    "closes that hung (ours / existing)",
    "trials x audio s",
]


def render_stt(rows: list[Row]) -> str:
    """A table per model."""
    tables = []
    for model, name in STT_MODELS.items():
        if picked := [r for r in rows if stt_model(r) == model]:
            tables.append(_stt_table(picked, name))
    return "\n\n".join(tables)


def _stt_table(rows: list[Row], name: str) -> str:
    body = []
    for r in rows:
        body.append(
            [
                str(r["streams"]),
                f"{r['rate_hz'] // 1000} kHz",
                r["pace"],
                cpu_cell(r),
                process_cell(r),
                pair(r, "streams_per_core", digits=0),
                above_floor(r),
                percentile_pair(r, "frame_lateness_ms"),
                percentile_pair(r, "final_delivery_ms"),
                pair(r, "peak_rss_mb", digits=0),
                pair(r, "gc_max_pause_ms"),
                "; ".join(
                    f"{fmt(r['gc_full_collections'][k], 0)}, {fmt(r['gc_max_young_pause_ms'][k])}"
                    for k in PLUGINS
                ),
                pair(r, "hung_closes", digits=0),
                f"{r['trials']} x {r['seconds']:g}",
            ]
        )
    return table(
        f"STT{name}, concurrent streams (medians of the trials, alternating A/B).", STT_HEADER, body
    )


TTS_HEADER = [
    "streams",
    "CPU-s per audio-hour: ours / existing / ratio",
    "above the raw-receive floor (ours / existing)",
    "time to first audio p50/p99 ms (ours; existing)",
    "peak RSS MB (ours / existing)",
    "trials x s",
]


def render_tts(rows: list[Row]) -> str:
    """A table per model."""
    tables = []
    for model, name in TTS_MODELS.items():
        if picked := [r for r in rows if tts_model(r) == model]:
            tables.append(_tts_table(picked, name))
    return "\n\n".join(tables)


def _tts_table(rows: list[Row], name: str) -> str:
    body = []
    for r in rows:
        body.append(
            [
                str(r["streams"]),
                cpu_cell(r),
                above_floor(r),
                percentile_pair(r, "ttfb_ms"),
                pair(r, "peak_rss_mb", digits=0),
                f"{r['trials']} x {r['seconds']:g}",
            ]
        )
    return table(
        f"{name} over WebSocket, 24 kHz audio at real time (medians of the trials, A/B).",
        TTS_HEADER,
        body,
    )


def ratio_series(
    data: dict[str, Any], key: str = "cpu_ratio", what: str = " input"
) -> list[tuple[str, dict[int, Any]]]:
    """`key` (ours over the existing plugin's) by stream count: one series per model and input
    rate of the real-time STT runs, then, for the CPU ratio, one per TTS model."""
    realtime = [r for r in data["stt"] if r["pace"] == "realtime" and r.get(key)]
    series = []
    for model, name in STT_MODELS.items():
        for rate in sorted({r["rate_hz"] for r in realtime if stt_model(r) == model}):
            picked = [r for r in realtime if stt_model(r) == model and r["rate_hz"] == rate]
            label = f"STT{name}, {rate // 1000} kHz{what}"
            series.append((label, {r["streams"]: r[key] for r in picked}))
    if key == "cpu_ratio":
        for model, name in TTS_MODELS.items():
            if picked := [r for r in data["tts"] if tts_model(r) == model]:
                series.append((f"{name} over WebSocket", {r["streams"]: r[key] for r in picked}))
    return series


def render_headline(data: dict[str, Any]) -> str:
    """CPU per audio-hour, ours over the existing plugin's, by stream count: the README's."""
    counts = sorted({r["streams"] for r in data["stt"] + data["tts"]})
    lines = [
        "| client CPU, ours / existing | "
        + " | ".join(f"{n} stream{'s' if n > 1 else ''}" for n in counts)
        + " |",
        "|---|" + "---:|" * len(counts),
    ]
    rows = ratio_series(data) + ratio_series(data, "process_cpu_ratio", ", whole client process")
    for label, by_n in rows:
        lines.append(f"| {label} | " + " | ".join(ratio(by_n.get(n)) for n in counts) + " |")
    return "\n".join(lines)


def render_hot_paths(data: dict[str, Any]) -> str:
    body = [
        [
            r["name"],
            f"{r['existing_us']:.2f}",
            f"{r['native_us']:.2f}",
            f"{r['speedup']:.1f}x",
            r["target"],
        ]
        for r in data["rows"]
    ]
    lines = table(
        "Per call, medians of the trials, microseconds.",
        ["hot path", "existing (us)", "native (us)", "speed-up", "target"],
        body,
    ).splitlines()
    lines[3] = "|---|---:|---:|---:|---|"
    return "\n".join(lines)


def render_criterion(data: dict[str, Any]) -> str:
    body = [[r["name"], format_ns(r["median_ns"])] for r in data["rows"]]
    lines = table("`cargo bench`, the Rust functions alone.", ["bench", "median"], body)
    return lines.replace("|---|---|", "|---|---:|")


def format_ns(ns: float) -> str:
    return f"{ns:.0f} ns" if ns < 1000 else f"{ns / 1000:.2f} us"


def conditions(data: dict[str, Any]) -> str:
    c = data["conditions"]
    return "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in c.items() if k != "notes")


def plot_load(data: dict[str, Any], out: Path) -> list[Path]:
    """The headline plot (CPU ratio by stream count) and CPU per stream against N."""
    plt = _pyplot()
    written = []

    realtime = [r for r in data["stt"] if r["pace"] == "realtime"]
    counts = sorted({r["streams"] for r in realtime + data["tts"]})
    series = ratio_series(data)
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(series)
    for i, (label, by_n) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j, n in enumerate(counts) if n in by_n]
        ys = [by_n[n] for n in counts if n in by_n]
        bars = ax.bar(xs, ys, width, label=label)
        ax.bar_label(bars, labels=[f"{y:.2f}" for y in ys], fontsize=7, padding=1)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.text(-0.45, 1.02, "existing plugin = 1", ha="left", va="bottom", fontsize=8)
    ax.set_xticks(range(len(counts)), [f"{n}" for n in counts])
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("client CPU, ours / existing (lower is better)")
    ax.set_xlim(-0.5, len(counts) - 0.5)
    ax.set_ylim(0, 1.35)
    existing = data["conditions"].get("existing", "the existing plugin")
    ax.set_title(f"Client CPU per audio-hour, this plugin against {existing}", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", ncol=len(series), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    written.append(_save(plt, fig, out / "cpu-ratio.png"))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    lines = sorted({(stt_model(r), r["rate_hz"]) for r in realtime})
    for i, (model, rate) in enumerate(lines):
        picked = sorted(
            (r for r in realtime if (stt_model(r), r["rate_hz"]) == (model, rate)),
            key=lambda r: r["streams"],
        )
        ns = [r["streams"] for r in picked]
        for key, style in (("ours", "-o"), ("existing", "--s")):
            ys = [_num(r["cpu_s_per_audio_hour"].get(key)) for r in picked]
            label = f"{key}, {model}, {rate // 1000} kHz"
            ax.plot(ns, ys, style, color=f"C{i}", label=label)
    ax.set_xscale("log")
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.set_xlabel("concurrent real-time streams")
    ax.set_ylabel("client CPU-seconds per audio-hour (per stream)")
    ax.set_title("Baseten STT client cost per stream", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    written.append(_save(plt, fig, out / "stt-cpu-per-stream.png"))
    return written


def plot_hot_paths(data: dict[str, Any], out: Path) -> Path:
    plt = _pyplot()
    rows = data["rows"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [r["name"] for r in rows]
    speedups = [r["speedup"] for r in rows]
    bars = ax.barh(range(len(rows)), speedups)
    ax.bar_label(bars, labels=[f"{s:.1f}x" for s in speedups], fontsize=8, padding=2)
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlim(0, max(speedups) * 1.12)
    ax.set_xlabel("speed-up per call, native over what a plugin user has today")
    ax.set_title("Hot paths, one call each", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(plt, fig, out / "hot-paths.png")


def _num(x: float | None) -> float:
    return math.nan if x is None else x


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    # No software version or date in the file: the same data draws the same bytes.
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where the JSON files are (and the plots go)")
    parser.add_argument("--markdown", action="store_true", help="print the tables too")
    parser.add_argument("--no-plots", action="store_true", help="leave the plots as they are")
    parser.add_argument(
        "--check",
        type=Path,
        nargs="+",
        default=[],
        metavar="FILE",
        help="exit 1 unless every line of the tables is in one of these files (the docs)",
    )
    args = parser.parse_args()
    folder: Path = args.folder
    plots = not args.no_plots
    sections = []
    if (path := folder / "load.json").exists():
        data = load(path, LOAD_SCHEMA)
        if plots:
            plot_load(data, folder)
        sections += [render_headline(data), render_stt(data["stt"])]
        if data["tts"]:
            sections.append(render_tts(data["tts"]))
    if (path := folder / "hot-paths.json").exists():
        hot = load(path, HOT_PATHS_SCHEMA)
        if plots:
            plot_hot_paths(hot, folder)
        sections.append(render_hot_paths(hot))
    if (path := folder / "criterion.json").exists():
        sections.append(render_criterion(load(path, CRITERION_SCHEMA)))
    if not sections:
        parser.error(f"no load.json, hot-paths.json or criterion.json in {folder}")
    if args.markdown:
        print("\n\n".join(sections))
    if args.check:
        shown = {line for f in args.check for line in f.read_text().splitlines()}
        rows = [line for s in sections for line in s.splitlines() if line.startswith("| ")]
        if missing := [line for line in rows if line not in shown]:
            print("table rows not in the docs (regenerate with --markdown):", file=sys.stderr)
            print("\n".join(missing), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
