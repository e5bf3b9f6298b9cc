# SPDX-License-Identifier: Apache-2.0
"""Ending a benchmark process that used livekit.rtc, without the interpreter's teardown."""

import os
import sys
from typing import NoReturn


def exit_now(code: int) -> NoReturn:
    """Flushes stdout and stderr, then ends the process at once: no atexit handlers, no
    interpreter finalization. For scripts whose results are printed and that hold nothing else.

    livekit.rtc's native library (initialised by `rtc.AudioResampler`, among others) hands its
    log records to Python from its own Rust threads, through a ctypes callback; its atexit handler
    logs one more as it shuts down. On CPython before 3.14, a thread that asks for the GIL once
    the interpreter is finalizing is ended with pthread_exit(), whose forced unwind cannot cross
    the Rust frames below the callback: the runtime aborts the process (SIGABRT). A record that
    reaches Python late enough does that, rarely, and more often on a loaded machine.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
