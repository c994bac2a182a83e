"""The command line: bad input exits 2 with one line and no output file; --help without torch; models --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from nvcodec.container import CODEC_NAMES

NVCODEC = [sys.executable, "-m", "nvcodec.cli"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*NVCODEC, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def assert_bad_input(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nvcodec: error:"), result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "random-bytes.nvc").write_bytes(os.urandom(4096))
    (tmp_path / "notes.txt").write_text("not a video\n")
    return tmp_path


@pytest.mark.parametrize(
    "args,output",
    [
        (("decode", "missing.nvc", "-o", "x.mkv"), "x.mkv"),
        (("decode", "random-bytes.nvc", "-o", "x.mkv"), "x.mkv"),
        (("info", "random-bytes.nvc"), None),
        (("encode", "notes.txt", "-o", "y.nvc"), "y.nvc"),
        (("encode", "missing.mp4", "-o", "y.nvc"), "y.nvc"),
        (("encode", "notes.txt", "-o", "notes.txt", "--force"), None),
        (("decode", "random-bytes.nvc", "-o", "x.avi"), "x.avi"),
        (("encode", "notes.txt", "-o", "y.nvc", "--frames", "5:2"), "y.nvc"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(workdir: Path, args, output) -> None:
    before = sorted(p.name for p in workdir.iterdir())
    assert_bad_input(run_cli(*args, cwd=workdir))
    assert sorted(p.name for p in workdir.iterdir()) == before
    if output:
        assert not (workdir / output).exists()
    assert (workdir / "notes.txt").read_text() == "not a video\n"


_HELP_PROBE = """
import contextlib, io, json, sys
from nvcodec.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main(["--help"])
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "torch": "torch" in sys.modules, "help": out.getvalue()}))
"""


def test_help_runs_without_importing_torch(tmp_path: Path) -> None:
    """``nvcodec --help`` prints every command and never imports torch (its start-up cost).

    How long start-up takes is a benchmark, not a test: no timing is asserted here.
    """
    probe = subprocess.run([sys.executable, "-c", _HELP_PROBE], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert probe.returncode == 0, probe.stderr
    result = json.loads(probe.stdout)
    assert result["code"] in (0, None) and result["torch"] is False
    for command in ("encode", "decode", "info", "models", "train", "export", "bench", "demo"):
        assert command in result["help"], command
    exe = Path(sys.executable).with_name("nvcodec")
    command = [str(exe), "--help"] if exe.exists() else [*NVCODEC, "--help"]
    installed = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert installed.returncode == 0 and installed.stdout == result["help"]


def test_models_json_lists_registered_models(tmp_path: Path) -> None:
    result = run_cli("models", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    names = {row["name"]: row for row in rows}
    assert {"intra-small", "hypernerv-small"} <= set(names)
    for row in rows:
        assert row["codec"] in CODEC_NAMES
        assert row["quality_levels"] >= 3
        assert isinstance(row["weights_present"], bool)
