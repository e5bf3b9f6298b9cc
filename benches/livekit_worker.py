# SPDX-License-Identifier: Apache-2.0

"""LiveKit Agents' job process pool, started as its worker starts it on Linux: a forkserver
with the registered plugins and LiveKit's warm-up preloaded, every job process forked from it
and set up by `setup` (LiveKit's setup_fnc). Shared by benches/worker_memory.py and
tests/test_worker.py."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable, Coroutine
from typing import Any

from livekit.agents import JobExecutorType
from livekit.agents.ipc.proc_pool import ProcPool


def process_pool(
    setup: Callable[[Any], None],
    entrypoint: Callable[[Any], Coroutine[Any, Any, None]],
    processes: int,
    preload: tuple[str, ...] = (),
) -> ProcPool:
    """The pool with `processes` idle job processes once started; `preload` names more
    modules for the forkserver to import. Needs a running event loop."""
    os.environ.setdefault("LIVEKIT_AGENTS_PRELOAD_LOCAL_INFERENCE", "0")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        ["livekit.plugins.baseten", "livekit.agents.ipc._preload", *preload]
    )
    return ProcPool(
        initialize_process_fnc=setup,
        job_entrypoint_fnc=entrypoint,
        session_end_fnc=None,
        simulation_end_fnc=None,
        num_idle_processes=processes,
        initialize_timeout=60.0,
        close_timeout=10.0,
        session_end_timeout=10.0,
        inference_executor=None,
        job_executor_type=JobExecutorType.PROCESS,
        mp_ctx=context,
        memory_warn_mb=0,
        memory_limit_mb=0,
        http_proxy=None,
        loop=asyncio.get_running_loop(),
    )
