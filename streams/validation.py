"""Validation of raw Kafka messages against the contract's JSON Schemas.

Every validator is compiled once, at import, from the documents shipped in
``schemas/`` through an offline registry: a ``$ref`` that is not one of those
documents fails at import instead of reaching for the network.

``decode_inbound`` turns the bytes of one ``loyalty.events`` message into an
event dict or raises ``InvalidInput`` with a stable ``reason_code``; it never
raises anything else for any input (STYLE 12: bad input is dead-lettered, it
never crashes the consumer). It holds no business rule: a valid event may
still be rejected by the ledger.

Integers: JSON Schema counts ``1.0`` as an integer; this module does not. A
number the schema types ``integer`` must be written as an integer literal, so
``1.0`` and ``1e3`` are rejected with reason ``schema``. A producer that keeps
money in floating point then fails on its first event, not on the odd one
whose float happens not to be whole, and the ledger only ever sees ``int``.
Booleans are never integers (the schemas already say so).
"""

from __future__ import annotations

import base64
import codecs
import enum
import json
from collections.abc import Iterable
from datetime import datetime, timezone
from itertools import islice

import jsonschema_rs
import orjson

import schemas

MESSAGE_BYTES_MAX = 64 * 1024
ERROR_MESSAGE_CHARS_MAX = 1024
REASON_MESSAGE_CHARS_MAX = 4096
SCHEMA_ERRORS_REPORTED_MAX = 3
VALUE_PREVIEW_CHARS_MAX = 1024
# A dead_letter.v1 envelope at its schema's limits (key and value of up to 4 MiB each in
# base64, the text fields JSON-escaped) and its record's headers: the relay's request limit
# and the dead-letter topic's max.message.bytes, so a dead letter of any message the broker
# accepted on the inbound topic can be published.
DEAD_LETTER_RECORD_BYTES_MAX = 12 * 1024 * 1024
QUOTED_VALUE_CHARS_MAX = 80

INBOUND_TYPES = ("purchase", "refund", "referral", "birthday", "redemption", "year_closed",
                 "adjustment", "transfer", "member_enrolled", "profile_updated", "member_erased",
                 "nps_response", "redemption_hold", "redemption_capture", "redemption_void",
                 "redemption_cancel")
INBOUND_VERSIONS = (1,)
OUTBOUND_NAMES = ("tier_changed", "dead_letter", "ledger_fact", "points_expiring")
DEAD_LETTER_SCHEMA_VERSION = 1
INTEGER_LITERAL_RULE = "write the integer as a literal, no fraction or exponent (1, not 1.0 or 1e0)"
NUL = "\x00"
NUL_MESSAGE = "contains the NUL character (U+0000), which PostgreSQL text cannot store"
PATTERN_HINTS = {  # what a pattern of common.v1.json asks for, said for people (not the regex)
    "timestamp": "an RFC 3339 time with an offset, years 1970 to 2999 (2025-03-14T09:26:53Z)",
    "currency": "three upper-case letters (an ISO 4217 code such as EUR)",
    "tier": "a lower-case letter then up to 31 lower-case letters, digits or underscores",
}
_JSON_TYPE_NAMES = {
    dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
}


class ReasonCode(enum.StrEnum):
    """Why a message was refused: stable strings, the dead letter's ``reason_code``."""

    NOT_JSON = "not_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_VERSION = "unknown_version"
    SCHEMA = "schema"
    TOO_LARGE = "too_large"


class InvalidInput(ValueError):
    """An inbound message the ledger cannot accept: dead-letter it and go on."""

    def __init__(self, reason_code: ReasonCode, message: str) -> None:
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message


class InvalidOutput(ValueError):
    """An outbound document that breaks its schema: a bug in this service, not in the input."""


def _refuse_retrieval(uri: str) -> dict:
    raise LookupError(f"schema {uri!r} is not shipped in schemas/ and is never fetched")


def _compile(name: str, registry: jsonschema_rs.Registry) -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for(
        schemas.load_schema(name),
        registry=registry,
        retriever=_refuse_retrieval,
        validate_formats=True,
        ignore_unknown_formats=False,
    )


def build_registry() -> jsonschema_rs.Registry:
    """An offline registry of every shipped schema, keyed by its ``$id``."""
    resources = list(schemas.documents_by_id().items())
    return jsonschema_rs.Registry(resources, retriever=_refuse_retrieval)


def _item_integer_fields() -> tuple[str, ...]:
    item = schemas.load_schema("inbound/purchase.v1.json")["$defs"]["item"]
    fields = item["properties"].items()
    return tuple(name for name, field in fields if field.get("type") == "integer")


_REGISTRY = build_registry()
_INBOUND = {
    (kind, version): _compile(f"inbound/{kind}.v{version}.json", _REGISTRY)
    for kind in INBOUND_TYPES
    for version in INBOUND_VERSIONS
}
_LATEST_VERSION = {kind: max(INBOUND_VERSIONS) for kind in INBOUND_TYPES}
_OUTBOUND = {name: _compile(f"outbound/{name}.v1.json", _REGISTRY) for name in OUTBOUND_NAMES}
ITEM_INTEGER_FIELDS = _item_integer_fields()


def decode_inbound(raw: bytes | None, *, message_bytes_max: int = MESSAGE_BYTES_MAX) -> dict:
    """Parse and validate one inbound message value; ``InvalidInput`` if it is no valid event."""
    if not raw:
        raise InvalidInput(ReasonCode.NOT_JSON, "the message value is empty (null or 0 bytes)")
    if len(raw) > message_bytes_max:
        size = f"the message is {len(raw)} bytes; the limit is {message_bytes_max} bytes"
        raise InvalidInput(ReasonCode.TOO_LARGE, size)
    event = _parse_object(raw)
    validator = _inbound_validator(event)  # InvalidInput: unknown type or version
    try:
        problem = _problem(validator, event, raw)
    except ValueError as error:  # jsonschema-rs: "Recursion limit reached" on deep nesting
        raise InvalidInput(ReasonCode.SCHEMA, f"the document cannot be validated: {error}") from None
    if problem is not None:
        raise InvalidInput(ReasonCode.SCHEMA, problem)
    return event


def validate_outbound(name: str, document: dict) -> None:
    """Check a ``tier_changed`` or ``dead_letter`` document; ``InvalidOutput`` if it is wrong."""
    validator = _OUTBOUND.get(name)
    if validator is None:
        raise KeyError(f"no outbound schema {name!r}; known: {', '.join(OUTBOUND_NAMES)}")
    problem = _problem(validator, document)
    if problem is not None:
        raise InvalidOutput(f"{name}: {problem}")


def dead_letter_document(
    *,
    value: bytes | None,
    key: bytes | None,
    reason_code: str,
    reason_message: str,
    source_topic: str,
    source_partition: int,
    source_offset: int,
    attempts: int,
    dead_lettered_at: datetime,
) -> dict:
    """The ``dead_letter.v1`` envelope for one refused message, validated before it is returned."""
    document = {
        "schema_version": DEAD_LETTER_SCHEMA_VERSION,
        "reason_code": str(reason_code),
        "reason_message": _clip(reason_message, REASON_MESSAGE_CHARS_MAX) or "(no message)",
        "source_topic": source_topic,
        "source_partition": source_partition,
        "source_offset": source_offset,
        "key_base64": _base64_or_none(key),
        "value_base64": _base64_or_none(value),
        "value_preview": _utf8_preview(value),
        "dead_lettered_at": _rfc3339_utc(dead_lettered_at),
        "attempts": attempts,
    }
    validate_outbound("dead_letter", document)
    return document


def refused_line_document(*, preview: bytes, size_bytes: int, message_bytes_max: int, source_topic: str, source_file: str, source_line: int,
                          dead_lettered_at: datetime) -> dict:
    """The ``dead_letter.v1`` envelope of an input line too large to send to Kafka at all.

    It never got a Kafka position: ``source_file`` and ``source_line`` say
    where it is; ``value_preview`` shows its start (``preview``), the bytes
    themselves stay in the file (a dead letter must fit on the topic).
    """
    document = {
        "schema_version": DEAD_LETTER_SCHEMA_VERSION,
        "reason_code": str(ReasonCode.TOO_LARGE),
        "reason_message": f"the line is {size_bytes} bytes; the limit is {message_bytes_max} bytes "
                          "(message_bytes_max); it was not sent to Kafka",
        "source_topic": source_topic,
        "source_partition": None,
        "source_offset": None,
        "source_file": source_file,
        "source_line": source_line,
        "key_base64": None,
        "value_base64": None,
        "value_preview": _utf8_preview(preview, strict_end=False),
        "dead_lettered_at": _rfc3339_utc(dead_lettered_at),
        "attempts": 1,
    }
    validate_outbound("dead_letter", document)
    return document


def _parse_object(raw: bytes) -> dict:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        detail = _clip(str(error), ERROR_MESSAGE_CHARS_MAX)
        raise InvalidInput(ReasonCode.NOT_JSON, f"not valid UTF-8 JSON: {detail}") from None
    if not isinstance(value, dict):
        got = f"expected a JSON object, got a JSON {_json_type(value)}"
        raise InvalidInput(ReasonCode.NOT_AN_OBJECT, got)
    return value


def _inbound_validator(event: dict) -> jsonschema_rs.Validator:
    kind = event.get("type")
    if "type" not in event:
        raise InvalidInput(ReasonCode.SCHEMA, '(root): "type" is a required property')
    if not isinstance(kind, str):
        got = f"/type: expected a string, got a JSON {_json_type(kind)}"
        raise InvalidInput(ReasonCode.SCHEMA, got)
    if kind not in _LATEST_VERSION:
        known = ", ".join(INBOUND_TYPES)
        unknown = f"/type: unknown event type {_quote(kind)}; known: {known}"
        raise InvalidInput(ReasonCode.UNKNOWN_TYPE, unknown)
    version = event.get("schema_version")
    if type(version) is not int:  # missing or mistyped: the schema says so, naming the field
        return _INBOUND[(kind, _LATEST_VERSION[kind])]
    validator = _INBOUND.get((kind, version))
    if validator is None:
        known = ", ".join(str(v) for v in INBOUND_VERSIONS)
        unknown = f"/schema_version: {kind} version {version} is unknown; known: {known}"
        raise InvalidInput(ReasonCode.UNKNOWN_VERSION, unknown)
    return validator


def _problem(validator: jsonschema_rs.Validator, document: dict, raw: bytes | None = None) -> str | None:
    """What is wrong with ``document`` (field paths included), or None if it is valid.

    ``raw``, the bytes ``document`` was parsed from, lets a message show a
    number as it was written (``10**30``, not the float it was parsed to).
    """
    if not validator.is_valid(document):
        errors = islice(validator.iter_errors(document), SCHEMA_ERRORS_REPORTED_MAX)
        return _schema_message(errors, _literals(raw))
    float_path = _float_integer_path(document)
    if float_path is not None:
        return f"{float_path}: {INTEGER_LITERAL_RULE}"
    return None


def _float_integer_path(document: dict) -> str | None:
    """Pointer to the first integer written ``1.0`` / ``1e3`` in a schema-valid document, or None.

    Every number at the top level of every schema is an integer; below it only
    ``items`` holds numbers, and there ``ITEM_INTEGER_FIELDS`` are the integers.
    """
    for key, value in document.items():
        if type(value) is float:
            return f"/{key}"
    for index, item in enumerate(document.get("items", ())):
        for key in ITEM_INTEGER_FIELDS:
            if type(item.get(key)) is float:
                return f"/items/{index}/{key}"
    return None


def _schema_message(errors: Iterable[jsonschema_rs.ValidationError], literals: object) -> str:
    parts = [f"{_pointer(error.instance_path)}: {_error_text(error, literals)}" for error in errors]
    return _clip("; ".join(parts), ERROR_MESSAGE_CHARS_MAX)


def _error_text(error: jsonschema_rs.ValidationError, literals: object) -> str:
    """jsonschema-rs's message, except: NUL named, a pattern explained (not dumped), numbers as written."""
    if isinstance(error.instance, str) and NUL in error.instance:
        return NUL_MESSAGE
    if isinstance(error.kind, jsonschema_rs.ValidationErrorKind.Pattern):
        return _pattern_text(error)
    if type(error.instance) in (int, float):
        written = _literal_at(literals, error.instance_path)
        if written is not None:
            return f"{written} {error.message.split(' ', 1)[-1]}"
    return error.message


def _pattern_text(error: jsonschema_rs.ValidationError) -> str:
    value = error.instance
    definition = str(error.schema_path[-2]) if len(error.schema_path) > 1 else ""
    wanted = PATTERN_HINTS.get(definition, "the form its schema describes")
    return f"{_quote(str(value))} is not {wanted}"


class _Literal(str):
    """A JSON number kept as the text it was written with."""


def _literals(raw: bytes | None) -> object:
    """``raw`` parsed with every number kept as written; None when it cannot be (too deep)."""
    if raw is None:
        return None
    try:
        return json.loads(raw, parse_int=_Literal, parse_float=_Literal)
    except (ValueError, RecursionError):
        return None


def _literal_at(document: object, path: Iterable[str | int]) -> str | None:
    for token in path:
        try:
            document = document[token]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return None
    return document if isinstance(document, _Literal) else None


def _pointer(path: Iterable[str | int]) -> str:
    """RFC 6901 JSON pointer of an instance path; ``(root)`` for the document itself."""
    tokens = [str(token).replace("~", "~0").replace("/", "~1") for token in path]
    return "/" + "/".join(tokens) if tokens else "(root)"


def _json_type(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value), "null")


def _quote(text: str) -> str:
    return repr(_clip(text, QUOTED_VALUE_CHARS_MAX))


def _clip(text: str, chars_max: int) -> str:
    return text if len(text) <= chars_max else text[: chars_max - 1] + "…"


def _base64_or_none(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _utf8_preview(data: bytes | None, strict_end: bool = True) -> str | None:
    """``data`` as strict UTF-8, cut to ``VALUE_PREVIEW_CHARS_MAX`` characters; None if it is not UTF-8.

    ``strict_end=False``: ``data`` is the start of something longer, so a
    character cut in two at its end is dropped, not an error.
    """
    if data is None:
        return None
    try:
        text = data.decode("utf-8") if strict_end else _decode_prefix(data)
    except UnicodeDecodeError:
        return None
    return text[:VALUE_PREVIEW_CHARS_MAX]


def _decode_prefix(data: bytes) -> str:
    decoder = codecs.getincrementaldecoder("utf-8")()
    return decoder.decode(data, final=False)


def _rfc3339_utc(moment: datetime) -> str:
    if moment.utcoffset() is None:
        raise ValueError(f"dead_lettered_at needs a UTC offset: {moment.isoformat()}")
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
