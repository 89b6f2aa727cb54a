"""The layers point inward, checked on the source (``ast``) and on what an import loads.

- ``ledger/`` imports nothing from ``streams`` or ``projections``;
- ``projections/`` imports nothing from ``streams``;
- the dev kit (``streams.devkit``) is imported only by itself and, inside
  functions (lazily), by the command line and ``loyalty process``;
- importing the production entry points (the command line, the worker, the
  relay, the follower) loads none of the dev kit's services.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ledger", "projections", "streams", "schemas")
DEVKIT = "streams.devkit"
# Modules that may import the dev kit, and only inside a function: the developer commands.
DEVKIT_LAZY_IMPORTERS = ("streams/cli/", "streams/process.py")
PRODUCTION_ENTRY_POINTS = ("streams.cli", "streams.worker", "streams.outbox", "projections.follower")
# The simulator is pure (no services): ``loyalty simulate``'s help shows its defaults.
DEVKIT_LOADED_BY_THE_PARSER = {DEVKIT, f"{DEVKIT}.simulator", f"{DEVKIT}.member_traffic",
                               f"{DEVKIT}.baskets"}  # pure: the simulator, its CRM traffic and baskets


def source_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imports(path: Path) -> list[tuple[str, bool]]:
    """``(module, inside a function)`` for every import in ``path`` (relative ones resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((alias.name, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = imported_from(child, package)
                found.append((base, in_function))
                found.extend((f"{base}.{alias.name}", in_function) for alias in child.names)
            visit(child, nested)

    visit(tree, False)
    return found


def imported_from(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{path.relative_to(ROOT)} imports {module}"
            for path in source_files(package) for module, _ in imports(path)
            if any(is_within(module, name) for name in forbidden)]


def test_the_import_walker_sees_every_kind_of_import():
    """The checks below are only as good as this: plain, from, relative and nested imports."""
    module = ROOT / "streams" / "process.py"
    found = dict(imports(module))
    assert found["ledger.credits.credits_settled"] is False
    assert found["streams.devkit.services.running_services"] is True
    assert imported_from(ast.parse("from ..postgres import urls").body[0], "ledger.postgres") == \
        "ledger.postgres"
    assert imported_from(ast.parse("from . import rules").body[0], "ledger") == "ledger"


def test_the_ledger_imports_neither_streams_nor_projections():
    assert source_files("ledger")
    assert violations("ledger", ("streams", "projections")) == []


def test_the_projections_import_nothing_from_streams():
    assert source_files("projections")
    assert violations("projections", ("streams",)) == []


def test_only_the_developer_commands_import_the_dev_kit_and_only_lazily():
    found = []
    for package in PACKAGES:
        for path in source_files(package):
            where = path.relative_to(ROOT).as_posix()
            if where.startswith("streams/devkit/"):
                continue
            lazy_allowed = where.startswith(DEVKIT_LAZY_IMPORTERS)
            found += [f"{where} imports {module}" + ("" if in_function else " at module level")
                      for module, in_function in imports(path)
                      if is_within(module, DEVKIT) and not (lazy_allowed and in_function)]
    assert found == []


def test_the_production_entry_points_load_no_dev_kit_services():
    code = ("import sys\n"
            f"for name in {PRODUCTION_ENTRY_POINTS!r}: __import__(name)\n"
            "imported = sorted(m for m in sys.modules if m.startswith('streams.devkit'))\n"
            "from streams.cli import build_parser\n"
            "build_parser()\n"
            "parsed = sorted(m for m in sys.modules if m.startswith('streams.devkit'))\n"
            "print(imported, parsed, sep='\\n')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            check=True)
    imported, parsed = result.stdout.splitlines()[-2:]
    assert imported == "[]"
    assert set(ast.literal_eval(parsed)) <= DEVKIT_LOADED_BY_THE_PARSER
