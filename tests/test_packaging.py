# SPDX-License-Identifier: Apache-2.0

"""The distribution: a drop-in for the existing plugin, sharing LiveKit's namespace packages, and
the wheel and sdist users install."""

import email
import importlib.metadata
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from email.message import Message
from pathlib import Path

import livekit
import livekit.plugins
import pytest
import tomllib
from livekit.agents import Plugin
from livekit.plugins import baseten, openai

ROOT = Path(__file__).resolve().parent.parent
LICENSE = (ROOT / "LICENSE").read_bytes()
# What any wheel of ours holds, whoever built it.
PACKAGE_FILES = ("__init__.py", "_native.pyi", "py.typed", "version.py")


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


# The tests of the built wheel and sdist share one worker: each worker builds its own, and two
# builds at once in the one cargo target directory trip over each other.
one_build = pytest.mark.xdist_group("release-wheel")


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The release wheel ./dev built (BASETEN_WHEEL), or one built here the same way."""
    if path := os.environ.get("BASETEN_WHEEL"):
        return Path(path)
    out = tmp_path_factory.mktemp("wheel")
    # maturin runs zig as `python3 -m ziglang`, from this interpreter's environment.
    path_with_zig = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    run_ok(
        [sys.executable, "-m", "maturin", "build", "--release", "--zig", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "PATH": path_with_zig},
        timeout=1800,
    )
    (found,) = out.glob("*.whl")
    return found


@pytest.fixture(scope="session")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sdist")
    run_ok([sys.executable, "-m", "maturin", "sdist", "--out", str(out)], cwd=ROOT, timeout=300)
    (found,) = out.glob("*.tar.gz")
    return found


def dist_info(names: list[str], suffix: str) -> str:
    (found,) = [n for n in names if re.fullmatch(r"[^/]+\.dist-info/" + suffix, n)]
    return found


@one_build
@pytest.mark.slow
def test_wheel_is_abi3_and_holds_no_namespace_init(wheel: Path) -> None:
    assert re.search(r"-cp310-abi3-", wheel.name), wheel.name
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "livekit/__init__.py" not in names
    assert "livekit/plugins/__init__.py" not in names
    package = {n for n in names if n.startswith("livekit/plugins/baseten/")}
    for expected in PACKAGE_FILES:
        assert f"livekit/plugins/baseten/{expected}" in package
    # One extension: the release build, not a debug one left in python/ by `./dev check`.
    assert [n for n in package if "_native" in n and not n.endswith(".pyi")] == [
        "livekit/plugins/baseten/_native.abi3.so"
    ]


@one_build
@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="auditwheel reads Linux wheels")
def test_release_wheel_is_manylinux2014(wheel: Path) -> None:
    arch = platform.machine()
    assert re.search(rf"-abi3-.*(manylinux2014|manylinux_2_17)_{arch}\b", wheel.name), wheel.name
    auditwheel = shutil.which("auditwheel", path=str(Path(sys.executable).parent))
    assert auditwheel, "auditwheel comes with the dev extra"
    report = " ".join(run_ok([auditwheel, "show", str(wheel)], timeout=120).stdout.split())
    assert f'consistent with the following platform tag: "manylinux_2_17_{arch}"' in report, report
    # Nothing to bundle: the extension links only the C library every manylinux system has.
    assert "external shared libraries are required" not in report, report


@one_build
@pytest.mark.slow
def test_wheel_carries_the_licence(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert zf.read(dist_info(names, "licenses/LICENSE")) == LICENSE
        metadata = email.message_from_bytes(zf.read(dist_info(names, "METADATA")))
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]


def sdist_member(tar: tarfile.TarFile, path: str) -> bytes:
    member = tar.extractfile(tar.getmember(f"{tar.getnames()[0].split('/')[0]}/{path}"))
    assert member is not None, path
    return member.read()


@one_build
def test_sdist_carries_the_licence_and_only_sources(sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        assert sdist_member(tar, "LICENSE") == LICENSE
        metadata: Message = email.message_from_bytes(sdist_member(tar, "PKG-INFO"))
        names = tar.getnames()
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    # What cargo needs for a locked build of the extension, benches included (a target a
    # manifest names must exist).
    for path in (
        "Cargo.lock",
        "rust/baseten-core/benches/hot_paths.rs",
        "rust/baseten-py/src/lib.rs",
    ):
        assert any(n.endswith(f"/{path}") for n in names), path
    assert not [n for n in names if n.endswith((".so", ".pyd", ".dylib", ".whl"))]


@one_build
@pytest.mark.slow
def test_a_wheel_builds_from_the_sdist_with_only_a_rust_toolchain(
    sdist: Path, tmp_path: Path
) -> None:
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "src", filter="data")
    (source,) = (tmp_path / "src").iterdir()
    cargo = shutil.which("cargo")
    assert cargo
    # pip runs maturin (the build backend, from this environment) and maturin runs cargo: no zig,
    # no network (the crates come from cargo's cache, as CI fetched them for the workspace).
    path = os.pathsep.join(
        [str(Path(sys.executable).parent), str(Path(cargo).parent), "/usr/bin", "/bin"]
    )
    env = {
        **os.environ,
        "PATH": path,
        "CARGO_NET_OFFLINE": "true",
        # No release LTO (this is about what the sdist holds, not how fast its build runs), and
        # the dependencies ./dev check built the same way are reused.
        "CARGO_TARGET_DIR": str(ROOT / "target" / "develop"),
        "MATURIN_PEP517_ARGS": "--profile dev",
    }
    out = tmp_path / "wheel"
    run_ok(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(out), str(source)],
        env=env,
        timeout=1800,
    )  # fmt: skip
    (built,) = out.glob("*.whl")
    # Built by a user's pip: not audited, so the plain platform tag.
    assert re.search(rf"-cp310-abi3-linux_{platform.machine()}\.whl$", built.name), built.name
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(built).extractall(unpacked)
    for expected in PACKAGE_FILES:
        assert (unpacked / "livekit" / "plugins" / "baseten" / expected).exists(), expected
    check = (
        "import sys; from livekit.plugins.baseten import _native as n; "
        "assert n.__file__.startswith(sys.argv[1]), n.__file__; "
        "assert n.mulaw_decode(n.mulaw_encode(bytes(4))) == bytes(4)"
    )
    run_ok(
        [sys.executable, "-c", check, str(unpacked)],
        env={**os.environ, "PYTHONPATH": str(unpacked)},
        timeout=120,
    )


@one_build
@pytest.mark.slow
@pytest.mark.local
def test_the_release_wheel_transcribes_without_a_rust_toolchain(
    wheel: Path, tmp_path: Path
) -> None:
    """A fresh venv with the wheel, its dependencies and the local extra, and no cargo or rustc.

    Tests run offline, so the dependencies are this environment's, seen through a .pth file,
    rather than downloaded again: what is installed into the new venv is the wheel alone.
    """
    venv = tmp_path / "venv"
    run_ok([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    bin_dir = venv / "bin"
    python = bin_dir / "python"
    purelib = run_ok(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], timeout=60
    ).stdout.strip()
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run_ok(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-index",
         "--no-deps", "--ignore-installed", str(wheel)],
        timeout=300,
    )  # fmt: skip
    path = os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"])
    for tool in ("cargo", "rustc"):
        assert shutil.which(tool, path=path) is None, tool
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASETEN_")}
    env["PATH"] = path
    where = run_ok(
        [str(python), "-c", "from livekit.plugins.baseten import _native; print(_native.__file__)"],
        env=env,
        timeout=120,
    ).stdout.strip()
    assert Path(where).is_relative_to(venv), where
    result = run_ok(
        [str(bin_dir / "livekit-baseten"), "transcribe", str(ROOT / "samples" / "question.wav")],
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert "using the local server" in result.stderr
    assert "quarterly" in result.stdout and "report" in result.stdout, result.stdout


def test_native_vs_python_benchmark_runs() -> None:
    result = run_ok(
        [sys.executable, str(ROOT / "benches" / "native_vs_python.py"), "--quick"], timeout=300
    )
    rows = [line for line in result.stdout.splitlines() if re.match(r"\| \w", line)]
    assert len(rows) == 10, result.stdout  # header + 9 hot paths


@pytest.mark.slow
@pytest.mark.load
def test_the_load_harness_runs_side_by_side(tmp_path: Path) -> None:
    """The benchmark is not a test: this only proves the harness works, in a tiny run."""
    result = run_ok([sys.executable, str(ROOT / "benches" / "harness.py"), "--quick"], timeout=300)
    # A row in each STT table (Whisper, Qwen3-ASR), then in each TTS table (Orpheus, Qwen3-TTS).
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 2 |")]
    assert len(rows) == 4, result.stdout
    both_ran = r"[\d.]+ / [\d.]+ / \*\*[\d.]+x\*\*"
    for stt_row in rows[:2]:
        cells = [c.strip() for c in stt_row.strip("|").split("|")]
        assert cells[:3] == ["2", "48 kHz", "realtime"]
        assert re.search(both_ran, cells[3]), stt_row
        assert re.search(both_ran, cells[4]), stt_row  # the whole processes, counted outside
        assert "n/a" not in cells[8], stt_row  # final transcripts were delivered to both
    for tts_row in rows[2:]:
        cells = [c.strip() for c in tts_row.strip("|").split("|")]
        assert re.search(both_ran, cells[1]), tts_row
        assert "n/a" not in cells[3], tts_row  # audio reached both
    assert "STT on Qwen3-ASR, concurrent" in result.stdout
    assert "Qwen3-TTS over WebSocket" in result.stdout
