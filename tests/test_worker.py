# SPDX-License-Identifier: Apache-2.0

"""The plugin inside LiveKit Agents' worker model: its process pool (forkserver, as the worker
starts it on Linux, with the worker's preloads and a setup_fnc), several jobs at once, each a
voice turn against the local server; and what a fork must not break (no thread started at
import, masking keys that differ between processes)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from livekit.agents.ipc.job_executor import JobExecutor, JobStatus
from livekit.agents.ipc.job_proc_executor import ProcJobExecutor
from livekit.agents.job import JobAcceptArguments, RunningJobInfo
from livekit.plugins.baseten.local import LocalServer
from livekit.protocol import agent, models

from . import worker_jobs
from .test_local import MIN_WORD_RECALL, words

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benches"))
from livekit_worker import process_pool

JOBS = 3
SENTENCES = [
    "The weather today is sunny with a light breeze.",
    "Please send the report to the finance team by Friday.",
    "My favourite colour is green and I like to read books.",
]


@pytest.mark.slow  # a fresh interpreter importing LiveKit: seconds on a busy machine
def test_importing_the_plugin_starts_no_thread() -> None:
    """Forking a process with threads copies only the forking one: whatever the others held
    (locks, sockets) would be broken in every job process. Counted by the kernel, so threads
    started in Rust count too; counted after LiveKit's own imports, whose FFI starts one."""
    code = (
        "import os\n"
        "import livekit.agents, livekit.rtc\n"
        "before = len(os.listdir('/proc/self/task'))\n"
        "from livekit.plugins import baseten\n"
        "from livekit.plugins.baseten import local\n"
        "print(before, len(os.listdir('/proc/self/task')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = map(int, out.stdout.split())
    assert after == before


def test_a_forked_process_draws_masking_keys_of_its_own() -> None:
    """The parent has drawn keys (its generator is seeded); two children forked from it must
    neither repeat its sequence nor each other's."""
    worker_jobs.masking_keys(4)
    children: list[list[str]] = []
    for _ in range(2):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its next keys, then out without running pytest's teardown
            os.close(read)
            os.write(write, json.dumps(worker_jobs.masking_keys(8)).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            children.append(json.loads(pipe.read()))
        assert os.waitpid(pid, 0)[1] == 0
    parent = worker_jobs.masking_keys(8)
    assert children[0] != parent and children[1] != parent and children[0] != children[1]
    assert len({key for keys in children for key in keys}) > 8


@pytest.mark.local
async def test_jobs_in_livekit_process_pool_each_run_a_turn_and_the_pool_closes_cleanly(
    tmp_path: Path,
) -> None:
    closed: list[JobExecutor] = []
    all_closed = asyncio.Event()

    def on_closed(proc: JobExecutor) -> None:
        closed.append(proc)
        if sum(p.running_job is not None for p in closed) == JOBS:
            all_closed.set()

    async with LocalServer() as server:
        # As the worker does: the registered plugins and LiveKit's warm-up, once, in the
        # forkserver; every job process is forked from it.
        pool = process_pool(
            worker_jobs.setup, worker_jobs.entrypoint, JOBS, preload=("tests.worker_jobs",)
        )
        pool.on("process_closed", on_closed)
        await pool.start()
        try:
            for i, text in enumerate(SENTENCES):
                metadata = {
                    "tts": server.tts_websocket_url,
                    "stt": server.whisper_url,
                    "text": text,
                    "out": str(tmp_path),
                }
                await pool.launch_job(
                    RunningJobInfo(
                        accept_arguments=JobAcceptArguments(
                            name="agent", identity=f"agent-{i}", metadata=""
                        ),
                        job=agent.Job(
                            id=f"job-{i}",
                            room=models.Room(name=f"room-{i}"),
                            type=agent.JobType.JT_ROOM,
                            metadata=json.dumps(metadata),
                        ),
                        url="ws://127.0.0.1:1",
                        token="",
                        worker_id="test-worker",
                        fake_job=True,
                    )
                )
            await asyncio.wait_for(all_closed.wait(), 120)
        finally:
            await asyncio.wait_for(pool.aclose(), 30)
    results = [json.loads((tmp_path / f"job-{i}.json").read_text()) for i in range(JOBS)]
    jobs = [p for p in closed if isinstance(p, ProcJobExecutor) and p.running_job is not None]
    assert len(jobs) == JOBS
    assert all(p.status == JobStatus.SUCCESS and p.exitcode == 0 for p in jobs)
    # One process per job, set up by the setup_fnc in that same process.
    assert len({r["pid"] for r in results}) == JOBS
    assert all(r["setup_pid"] == r["pid"] for r in results)
    # Processes forked from one image draw different masking keys.
    assert len({key for r in results for key in r["masks"]}) == 8 * JOBS
    hits = total = 0
    for text, r in zip(SENTENCES, results, strict=True):
        ref, hyp = words(text), words(r["heard"])
        hits += sum(min(ref.count(w), hyp.count(w)) for w in set(ref))
        total += len(ref)
    assert hits / total >= MIN_WORD_RECALL, [r["heard"] for r in results]
