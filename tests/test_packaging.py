"""Packaging: the top-level folders install as nvcodec.* and nothing generic lands at top level."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

SUBPACKAGES = ("codec", "entropy", "hypernerv", "train", "bench")
CHECK = (
    "import importlib, importlib.util, nvcodec;"
    + "".join(f"importlib.import_module('nvcodec.{name}');" for name in SUBPACKAGES)
    + f"leaks = [n for n in {SUBPACKAGES!r} if importlib.util.find_spec(n) is not None];"
    + "assert not leaks, leaks; print(nvcodec.__file__)"
)


def test_editable_install_resolves_subpackages(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve().is_relative_to(REPO)


@pytest.mark.slow
def test_regular_install_resolves_subpackages(tmp_path: Path) -> None:
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet", "--target", str(target), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr
    assert not any((target / name).exists() for name in SUBPACKAGES)
    assert (target / "nvcodec" / "codec" / "__init__.py").is_file()
    assert (target / "nvcodec" / "media" / "demo.mp4").is_file()
    run = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip()).resolve().is_relative_to(target.resolve())


def test_bench_never_imports_train() -> None:
    """DESIGN.md's layering: benchmarks measure shipped code and read checkpoints via nvcodec.checkpoints."""
    import ast

    offenders = []
    for path in sorted((REPO / "bench").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(REPO)}:{node.lineno} {name}" for name in names if name.startswith(("nvcodec.train", "train"))]
    assert offenders == []
