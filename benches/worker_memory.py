# SPDX-License-Identifier: Apache-2.0

"""Memory of an idle LiveKit job process with this plugin and with the existing one, side by
side: LiveKit Agents' own process pool, started as its worker starts it on Linux (forkserver,
the registered plugins and LiveKit's warm-up preloaded), each process's setup_fnc building
what a job then uses (an STT and a TTS).

    python benches/worker_memory.py [--processes 4] [--save docs/benchmarks]

Reported per idle process, medians: RSS (what `ps` shows, counting pages shared with the
forkserver), PSS (shared pages split between their sharers: what each process costs the
machine) and USS (pages no other process shares), from /proc/<pid>/smaps_rollup.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def setup(proc: Any) -> None:
    from livekit.plugins import baseten

    url = "ws://127.0.0.1:9/websocket"
    proc.userdata["stt"] = baseten.STT(api_key="bench", model_endpoint=url)
    proc.userdata["tts"] = baseten.TTS(api_key="bench", model_endpoint=url)


async def entrypoint(ctx: Any) -> None:
    raise RuntimeError("the memory benchmark runs no job")


def smaps(pid: int) -> dict[str, float]:
    """RSS, PSS and USS of `pid` in MB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        fields[name.rstrip(":")] = int(value)
    uss = fields["Private_Clean"] + fields["Private_Dirty"]
    return {"rss_mb": fields["Rss"] / 1024, "pss_mb": fields["Pss"] / 1024, "uss_mb": uss / 1024}


async def measure(processes: int) -> dict[str, Any]:
    from livekit.agents.ipc.job_proc_executor import ProcJobExecutor
    from livekit_worker import process_pool

    pool = process_pool(setup, entrypoint, processes, ("livekit.agents.ipc._preload_freeze",))
    await pool.start()
    try:
        pids = [
            p.pid for p in pool.processes if isinstance(p, ProcJobExecutor) and p.pid is not None
        ]
        per_process = [smaps(pid) for pid in pids]
    finally:
        await pool.aclose()
    return {key: statistics.median(p[key] for p in per_process) for key in per_process[0]} | {
        "processes": len(per_process)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--one", action="store_true", help="measure this interpreter's plugin")
    parser.add_argument("--save", type=Path, default=None, help="write worker_memory.json/.md")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(asyncio.run(measure(args.processes))))
        return
    from harness import run_json, upstream_python

    rows = {}
    for name, python in (("ours", Path(sys.executable)), ("existing", upstream_python())):
        rows[name] = run_json(
            [str(python), __file__, "--one", "--processes", str(args.processes)], timeout=300
        )
    lines = [
        "| idle job process, MB (median) | ours | existing | ours / existing |",
        "|---|---|---|---|",
    ]
    for key, label in (("rss_mb", "RSS"), ("pss_mb", "PSS"), ("uss_mb", "USS")):
        ours, theirs = rows["ours"][key], rows["existing"][key]
        lines.append(f"| {label} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        (args.save / "worker_memory.json").write_text(json.dumps(rows, indent=1))
        (args.save / "worker_memory.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
