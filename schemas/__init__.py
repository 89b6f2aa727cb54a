"""The JSON Schema documents of the public contract, shipped as package data.

Each document is draft 2020-12 and versioned in its file name
(``inbound/purchase.v1.json``). Its ``$id`` is ``ID_BASE`` followed by its
path under this folder. The ids are names, never addresses: nothing here or in
the validators fetches them; ``documents_by_id`` is what a registry is built
from, so every ``$ref`` resolves offline from these files.

This module only reads files: compiling validators is ``streams.validation``'s job.
"""

from __future__ import annotations

from pathlib import Path

import orjson

SCHEMAS_DIR = Path(__file__).resolve().parent
ID_BASE = "https://loyalty-ledger.example/schemas/"
SCHEMA_FILE_SUFFIX = ".json"


def schema_names() -> list[str]:
    """Relative names (``inbound/purchase.v1.json``) of every shipped schema, sorted."""
    paths = SCHEMAS_DIR.rglob(f"*{SCHEMA_FILE_SUFFIX}")
    return sorted(path.relative_to(SCHEMAS_DIR).as_posix() for path in paths)


def schema_path(name: str) -> Path:
    """The file of schema ``name``; a name that leaves this folder is a ValueError."""
    path = (SCHEMAS_DIR / name).resolve()
    if not path.is_relative_to(SCHEMAS_DIR) or path.suffix != SCHEMA_FILE_SUFFIX:
        raise ValueError(f"not a schema name: {name!r}")
    return path


def load_schema(name: str) -> dict:
    """The parsed document of schema ``name``, e.g. ``load_schema("inbound/purchase.v1.json")``."""
    return orjson.loads(schema_path(name).read_bytes())


def schema_id(name: str) -> str:
    """The ``$id`` that schema ``name`` declares (and that ``$ref`` uses)."""
    return ID_BASE + name


def documents_by_id() -> dict[str, dict]:
    """Every shipped document keyed by its ``$id``: the resources of an offline registry."""
    return {schema_id(name): load_schema(name) for name in schema_names()}
