# SPDX-License-Identifier: Apache-2.0

"""The documentation: every relative link resolves inside the repository, and the benchmark
tables agree with the data they come from."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target); a title after the target is allowed.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of `markdown`."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", markdown).splitlines():
        if m := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line):
            slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(path: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", path.read_text()))


def test_the_docs_exist() -> None:
    for path in DOCS:
        assert path.is_file(), path
    assert (ROOT / "docs" / "protocols.md") in DOCS


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(doc: Path) -> None:
    broken = []
    for target in links(doc):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not a file here
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.is_relative_to(ROOT) or not path.exists():
            broken.append(f"{target}: no such file in the repository")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert not broken, broken


@pytest.mark.parametrize(
    "folder, plots",
    [
        ("benchmarks", ("cpu-ratio.png", "stt-cpu-per-stream.png", "hot-paths.png")),
        ("benchmarks/qwen3", ("cpu-ratio.png", "stt-cpu-per-stream.png")),
    ],
)
def test_benchmark_tables_agree_with_the_data(folder: str, plots: tuple[str, ...]) -> None:
    data = ROOT / "docs" / folder
    result = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "report.py"), str(data), "--no-plots",
         "--check", str(ROOT / "README.md"), str(ROOT / "docs" / "benchmarks.md")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for plot in plots:
        assert (data / plot).is_file(), plot
