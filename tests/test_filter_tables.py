# SPDX-License-Identifier: Apache-2.0

"""The resampler's designed filters (rust/baseten-core/src/resample/designed.rs) are exactly
what rust/baseten-core/tools/design_filters.py writes, so the two cannot drift apart."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "rust" / "baseten-core" / "tools" / "design_filters.py"


def test_the_filter_tables_are_what_the_design_script_writes() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
