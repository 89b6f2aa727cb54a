"""The wheel holds every module and data file: ``deploy/Dockerfile``'s ``pip install .``
cannot silently leave code out.

The test builds the wheel from a copy of the sources (not the editable
install), installs it alone into a fresh directory and imports every module
of the source tree from there, with the repository off ``sys.path``: each
module's ``__file__`` must be in the installed copy. The dependencies come
from this environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ledger", "projections", "streams", "schemas")
PROJECT_FILES = ("pyproject.toml", "README.md")
NOT_IMPORTABLE = ("__main__",)  # ``python -m`` entry points run the command when imported
BUILD_TIMEOUT_S = 300
IMPORT_TIMEOUT_S = 120
OFFLINE_SETUPTOOLS_MIN = (70, 1)  # builds wheels without the ``wheel`` package


def source_modules() -> list[str]:
    modules = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] in NOT_IMPORTABLE:
                continue
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def data_files() -> set[str]:
    """Every file of the packages that is not Python (programs, schemas, the dev kit's pom)."""
    return {path.relative_to(ROOT).as_posix() for package in PACKAGES
            for path in (ROOT / package).rglob("*")
            if path.is_file() and path.suffix not in (".py", ".pyc")
            and "__pycache__" not in path.parts and not path.name.startswith(".")}


def build_isolation_flags() -> list[str]:
    """Build with this environment's setuptools when it can (offline); else pip's isolated build."""
    try:
        import setuptools
    except ImportError:
        return []
    version = tuple(int(part) for part in setuptools.__version__.split(".")[:2])
    return ["--no-build-isolation"] if version >= OFFLINE_SETUPTOOLS_MIN else []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built from a clean copy of the sources."""
    sources = tmp_path_factory.mktemp("sources")
    for name in PROJECT_FILES:
        shutil.copy2(ROOT / name, sources / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, sources / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    *build_isolation_flags(), "--wheel-dir", str(out), str(sources)],
                   check=True, timeout=BUILD_TIMEOUT_S, capture_output=True)
    [built] = out.glob("*.whl")
    return built


def test_the_wheel_holds_every_module_and_data_file(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {path.relative_to(ROOT).as_posix() for package in PACKAGES
               for path in (ROOT / package).rglob("*.py")}
    assert sources - names == set()
    assert {"ledger/programs/default.toml", "schemas/inbound/event.v1.json"} <= data_files()
    assert data_files() - names == set()


def test_every_module_imports_from_the_installed_wheel(wheel: Path, tmp_path: Path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", "--target", str(target), str(wheel)],
                   check=True, timeout=BUILD_TIMEOUT_S, capture_output=True)
    modules = source_modules()
    code = ("import importlib, json, sys\n"
            f"sys.path = [p for p in sys.path if p not in ('', {str(ROOT)!r})]\n"
            "files = {name: importlib.import_module(name).__file__ for name in sys.argv[1:]}\n"
            "print(json.dumps(files))\n")
    result = subprocess.run([sys.executable, "-c", code, *modules], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(target)},
                            capture_output=True, text=True, timeout=IMPORT_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-2000:]
    files = orjson.loads(result.stdout.splitlines()[-1])
    assert sorted(files) == sorted(modules) and len(modules) > 40
    outside = {name: path for name, path in files.items() if not path.startswith(str(target))}
    assert outside == {}
