# SPDX-License-Identifier: Apache-2.0

"""The repository's own rules: every source file says its licence in one SPDX line, and no
file carries another company's copyright header."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPDX = "SPDX-License-Identifier: Apache-2.0"
SOURCE_SUFFIXES = {".py", ".pyi", ".rs", ".toml", ".sh", ".yml", ".yaml"}
SCRIPTS = {"dev", ".ci/run"}
# Split so that this file does not match itself.
FOREIGN_HOLDER = "LiveKit" + ", Inc."


def tracked() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [name for name in out.split("\0") if name and (ROOT / name).is_file()]


def is_source(name: str) -> bool:
    if Path(name).suffix in SOURCE_SUFFIXES or name in SCRIPTS:
        return True
    with (ROOT / name).open("rb") as f:
        return f.read(2) == b"#!"  # any other script


def test_every_source_file_has_the_spdx_line_at_its_top() -> None:
    missing = []
    for name in filter(is_source, tracked()):
        lines = (ROOT / name).read_text().splitlines()
        start = 1 if lines and lines[0].startswith("#!") else 0
        comment = "//" if name.endswith(".rs") else "#"
        if f"{comment} {SPDX}" not in lines[start : start + 2]:
            missing.append(name)
    assert not missing, f"no '{SPDX}' line at the top of: {missing}"


def test_no_file_carries_a_foreign_copyright_header() -> None:
    found = []
    for name in tracked():
        if name in ("LICENSE", "LICENSE.txt"):
            continue
        if FOREIGN_HOLDER.encode() in (ROOT / name).read_bytes():
            found.append(name)
    assert not found, found
