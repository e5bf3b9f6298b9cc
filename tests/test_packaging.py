"""The distribution: a drop-in for the existing plugin, sharing LiveKit's namespace packages."""

import importlib.metadata
import os
import re
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import livekit
import livekit.plugins
import pytest
import tomllib
from livekit.agents import Plugin
from livekit.plugins import baseten, openai

ROOT = Path(__file__).resolve().parent.parent


def run_ok(
    args: list[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs a command to completion; if it fails, the assertion shows how, with its output."""
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, check=False
    )
    code = result.returncode
    how = f"{code} ({signal.Signals(-code).name})" if code < 0 else str(code)
    assert code == 0, (
        f"{args} exited with {how}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result


def test_livekit_and_livekit_plugins_stay_namespace_packages() -> None:
    assert getattr(livekit, "__file__", None) is None
    assert getattr(livekit.plugins, "__file__", None) is None
    # Our package and another plugin installed beside it both resolve through the namespace.
    assert Path(baseten.__file__).parent.name == "baseten"
    assert Path(openai.__file__).parent.name == "openai"
    for folder in (ROOT / "python" / "livekit", ROOT / "python" / "livekit" / "plugins"):
        assert not (folder / "__init__.py").exists()


def test_plugin_is_registered_with_livekit_agents() -> None:
    ours = [p for p in Plugin.registered_plugins if p.package == "livekit.plugins.baseten"]
    assert len(ours) == 1
    assert (ours[0].title, ours[0].version) == ("livekit.plugins.baseten", baseten.__version__)


def test_version_agrees_everywhere() -> None:
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    assert baseten.__version__ == cargo == importlib.metadata.version("livekit-plugins-baseten")


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel CI built (BASETEN_WHEEL), or one built here with maturin."""
    if path := os.environ.get("BASETEN_WHEEL"):
        return Path(path)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "maturin", "build", "--out", str(out), "--quiet"],
        cwd=ROOT,
        check=True,
    )
    (found,) = out.glob("*.whl")
    return found


@pytest.mark.slow
def test_wheel_is_abi3_and_holds_no_namespace_init(wheel: Path) -> None:
    assert re.search(r"-cp310-abi3-", wheel.name), wheel.name
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "livekit/__init__.py" not in names
    assert "livekit/plugins/__init__.py" not in names
    package = {n for n in names if n.startswith("livekit/plugins/baseten/")}
    for expected in ("__init__.py", "_native.pyi", "py.typed", "version.py"):
        assert f"livekit/plugins/baseten/{expected}" in package
    assert any(re.fullmatch(r"livekit/plugins/baseten/_native\.abi3\.so", n) for n in package)


def test_native_vs_python_benchmark_runs() -> None:
    result = run_ok(
        [sys.executable, str(ROOT / "benches" / "native_vs_python.py"), "--quick"], timeout=300
    )
    rows = [line for line in result.stdout.splitlines() if re.match(r"\| \w", line)]
    assert len(rows) == 8, result.stdout  # header + 7 hot paths


@pytest.mark.slow
@pytest.mark.load
def test_the_load_harness_runs_side_by_side(tmp_path: Path) -> None:
    """The benchmark is not a test: this only proves the harness works, in a tiny run."""
    result = run_ok([sys.executable, str(ROOT / "benches" / "harness.py"), "--quick"], timeout=300)
    # One row in the STT table, then one in the TTS table.
    stt_row, tts_row = [line for line in result.stdout.splitlines() if line.startswith("| 2 |")]
    both_ran = r"[\d.]+ / [\d.]+ / \*\*[\d.]+x\*\*"
    cells = [c.strip() for c in stt_row.strip("|").split("|")]
    assert cells[:3] == ["2", "48 kHz", "realtime"]
    assert re.search(both_ran, cells[3]), stt_row
    assert "n/a" not in cells[7], stt_row  # final transcripts were delivered to both
    cells = [c.strip() for c in tts_row.strip("|").split("|")]
    assert re.search(both_ran, cells[1]), tts_row
    assert "n/a" not in cells[3], tts_row  # audio reached both
