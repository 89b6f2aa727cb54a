"""The till API's OpenAPI 3.1 document, whose event bodies are the JSON Schemas of ``schemas/``.

FastAPI describes the paths; this module puts every shipped schema document
under ``components/schemas`` (``inbound/purchase.v1.json`` is
``inbound_purchase_v1``) with its relative ``$ref``s rewritten to point there,
and makes ``POST /v1/events`` take ``inbound/event.v1.json`` (any type) and
``POST /v1/quote`` the purchase document without ``event_id``. One source of
truth: a field added to a schema file appears here at the next start.
"""

from __future__ import annotations

import copy
import posixpath
from typing import Any

import schemas

COMPONENT_PREFIX = "#/components/schemas/"
EVENT_SCHEMA = "inbound/event.v1.json"
PURCHASE_SCHEMA = "inbound/purchase.v1.json"
QUOTE_COMPONENT = "quote_request"
ERROR_COMPONENT = "error"
DROPPED_KEYWORDS = ("$id", "$schema")
ERROR_SCHEMA = {
    "type": "object", "required": ["error", "message"],
    "properties": {"error": {"type": "string", "description": "a stable code: unauthorized, schema, ..."},
                   "message": {"type": "string", "description": "what is wrong, for a person"}},
}


def component_name(schema_name: str) -> str:
    return schema_name.removesuffix(schemas.SCHEMA_FILE_SUFFIX).replace("/", "_").replace(".", "_")


def _rewrite_ref(ref: str, schema_name: str) -> str:
    target, _, fragment = ref.partition("#")
    if target:
        target = posixpath.normpath(posixpath.join(posixpath.dirname(schema_name), target))
    return COMPONENT_PREFIX + component_name(target or schema_name) + fragment


def _rewritten(node: Any, schema_name: str) -> Any:
    if isinstance(node, dict):
        return {key: (_rewrite_ref(value, schema_name) if key == "$ref" else _rewritten(value, schema_name))
                for key, value in node.items() if key not in DROPPED_KEYWORDS}
    if isinstance(node, list):
        return [_rewritten(item, schema_name) for item in node]
    return node


def schema_components() -> dict[str, Any]:
    """Every shipped schema as an OpenAPI component, plus the quote body and the error body."""
    components = {component_name(name): _rewritten(schemas.load_schema(name), name)
                  for name in schemas.schema_names()}
    quote = copy.deepcopy(components[component_name(PURCHASE_SCHEMA)])
    quote["properties"].pop("event_id")
    quote["required"] = [field for field in quote["required"] if field != "event_id"]
    quote["title"] = "A purchase to quote (no event_id: nothing is written)"
    quote.pop("examples", None)
    return components | {QUOTE_COMPONENT: quote, ERROR_COMPONENT: ERROR_SCHEMA}


def _json_body(component: str) -> dict[str, Any]:
    return {"required": True,
            "content": {"application/json": {"schema": {"$ref": COMPONENT_PREFIX + component}}}}


def with_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's ``document`` with the schema components and the event and quote bodies."""
    document.setdefault("components", {}).setdefault("schemas", {}).update(schema_components())
    paths = document["paths"]
    paths["/v1/events"]["post"]["requestBody"] = _json_body(component_name(EVENT_SCHEMA))
    paths["/v1/quote"]["post"]["requestBody"] = _json_body(QUOTE_COMPONENT)
    document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    document["security"] = [{"bearer": []}]
    return document
