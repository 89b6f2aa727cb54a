"""The contract's JSON Schemas and the validation of raw inbound messages.

The schemas are what POS vendors receive, so they are checked as documents
(valid 2020-12, described, examples that pass) and as behaviour (what
``decode_inbound`` accepts and refuses, with which reason code and message).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import jsonschema_rs
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from streams.validation import (
    INBOUND_TYPES,
    ITEM_INTEGER_FIELDS,
    INTEGER_LITERAL_RULE,
    MESSAGE_BYTES_MAX,
    InvalidInput,
    InvalidOutput,
    ReasonCode,
    build_registry,
    dead_letter_document,
    decode_inbound,
    validate_outbound,
)

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
COMMON_FIELDS = ("type", "schema_version", "event_id", "member_id", "occurred_at")
REGISTRY = build_registry()
UTC = timezone.utc
WHERE_AND_WHEN = {
    "source_topic": "loyalty.events",
    "source_partition": 0,
    "source_offset": 0,
    "attempts": 1,
    "dead_lettered_at": datetime(2025, 1, 1, tzinfo=UTC),
}


def refuse(uri: str) -> dict:
    raise LookupError(f"tests never fetch {uri}")


def good(kind: str) -> dict:
    """A fresh copy of the first example of ``kind``'s schema: a valid event."""
    return dict(schemas.load_schema(f"inbound/{kind}.v1.json")["examples"][0])


def reason_and_message(event_or_raw) -> tuple[str, str]:
    raw = event_or_raw if isinstance(event_or_raw, bytes) else orjson.dumps(event_or_raw)
    with pytest.raises(InvalidInput) as caught:
        decode_inbound(raw)
    return caught.value.reason_code, caught.value.message


def walk(node, pointer: str = ""):
    """Every (pointer, subschema) of a schema document, skipping example and constant values."""
    if isinstance(node, dict):
        yield pointer, node
        for key, value in node.items():
            if key not in ("examples", "const", "enum", "default"):
                yield from walk(value, f"{pointer}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{pointer}/{index}")


def required_fields() -> list[tuple[str, str]]:
    return [
        (kind, field)
        for kind in INBOUND_TYPES
        for field in schemas.load_schema(f"inbound/{kind}.v1.json")["required"]
    ]


# --- the documents themselves ------------------------------------------------


@pytest.mark.parametrize("name", schemas.schema_names())
def test_every_schema_is_a_valid_2020_12_document_with_its_own_id(name):
    document = schemas.load_schema(name)
    # It declares draft 2020-12 and passes the metaschema.
    assert document["$schema"] == DRAFT_2020_12
    jsonschema_rs.meta.validate(document)
    # Its $id is its path under schemas/, and the version is in the file name.
    assert document["$id"] == schemas.schema_id(name)
    assert ".v1." in name
    assert document["title"] and document["description"]


@pytest.mark.parametrize("name", schemas.schema_names())
def test_every_reference_resolves_offline(name):
    # Compiling with a retriever that refuses everything proves no $ref needs the network.
    jsonschema_rs.validator_for(
        schemas.load_schema(name), registry=REGISTRY, retriever=refuse, validate_formats=True
    )


@pytest.mark.parametrize("name", schemas.schema_names())
def test_every_field_has_a_description(name):
    for pointer, node in walk(schemas.load_schema(name)):
        if "if" in pointer.split("/"):  # the dispatcher's conditions name no new field
            continue
        for field, subschema in node.get("properties", {}).items():
            assert subschema.get("description"), f"{name}{pointer}/properties/{field}"


@pytest.mark.parametrize("name", [n for n in schemas.schema_names() if n != "common.v1.json"])
def test_every_document_has_examples_and_decides_additional_properties(name):
    document = schemas.load_schema(name)
    assert len(document["examples"]) >= 1
    if name == "outbound/ledger_fact.v1.json":  # per-type fields sit in if/then branches
        assert document["unevaluatedProperties"] is False
    elif name != "inbound/event.v1.json":  # the dispatcher leaves it to each type
        assert document["additionalProperties"] is False


@pytest.mark.parametrize("name", schemas.schema_names())
def test_every_example_validates_against_the_schema_it_sits_in(name):
    document = schemas.load_schema(name)
    for pointer, node in walk(document):
        if "examples" not in node:
            continue
        subschema = {"$ref": f"{document['$id']}#{pointer}"}
        validator = jsonschema_rs.validator_for(
            subschema, registry=REGISTRY, retriever=refuse, validate_formats=True
        )
        for example in node["examples"]:
            assert validator.is_valid(example), f"{name}#{pointer}: {example!r}"


@pytest.mark.parametrize("kind", INBOUND_TYPES)
def test_inbound_examples_pass_decode_inbound(kind):
    for example in schemas.load_schema(f"inbound/{kind}.v1.json")["examples"]:
        assert decode_inbound(orjson.dumps(example)) == example


@pytest.mark.parametrize("name", ["tier_changed", "dead_letter"])
def test_outbound_examples_pass_validate_outbound(name):
    for example in schemas.load_schema(f"outbound/{name}.v1.json")["examples"]:
        validate_outbound(name, example)


def test_the_combined_event_schema_lists_every_type_and_agrees_with_each_type():
    document = schemas.load_schema("inbound/event.v1.json")
    combined = jsonschema_rs.validator_for(document, registry=REGISTRY, validate_formats=True)
    assert document["properties"]["type"]["enum"] == list(INBOUND_TYPES)
    for kind in INBOUND_TYPES:
        event = good(kind)
        assert combined.is_valid(event)
        # Each type's own rules apply through the dispatch: an unknown field fails.
        assert not combined.is_valid({**event, "amount": 1})
        # The same fields under another type's name fail that type's rules.
        # (member_erased has no fields of its own, so it is a valid birthday as well.)
        other = "birthday" if kind not in ("birthday", "member_erased") else "purchase"
        assert not combined.is_valid({**event, "type": other})
    assert not combined.is_valid({**good("purchase"), "type": "gift"})


def test_no_inbound_top_level_field_is_a_non_integer_number():
    # decode_inbound rejects every float at the top level; that is right only while
    # every top-level number of every inbound schema is an integer.
    common = schemas.load_schema("common.v1.json")["$defs"]
    for kind in INBOUND_TYPES:
        properties = schemas.load_schema(f"inbound/{kind}.v1.json")["properties"]
        for field, subschema in properties.items():
            if "$ref" in subschema:
                subschema = common[subschema["$ref"].rsplit("/", 1)[1]]
            assert subschema.get("type") != "number", f"{kind}.{field}"
    assert ITEM_INTEGER_FIELDS == ("amount_minor",)


def test_the_dead_letter_schema_documents_every_validation_reason_code():
    reason_code = schemas.load_schema("outbound/dead_letter.v1.json")["properties"]["reason_code"]
    assert set(reason_code["examples"]) == {code.value for code in ReasonCode}


def test_load_schema_refuses_names_outside_the_folder():
    with pytest.raises(ValueError):
        schemas.load_schema("../pyproject.toml")
    with pytest.raises(ValueError):
        schemas.load_schema("../../etc/passwd.json")


# --- inbound events: what is accepted --------------------------------------------


@pytest.mark.parametrize("kind", INBOUND_TYPES)
def test_a_good_event_of_each_type_is_accepted(kind):
    event = good(kind)
    assert decode_inbound(orjson.dumps(event)) == event


@pytest.mark.parametrize(
    "occurred_at",
    ["2025-03-14T09:26:53Z", "2025-03-14T10:26:53+01:00", "2025-03-14T04:26:53-05:00",
     "2025-03-14T09:26:53.123456789Z", "2025-03-14T09:26:53-00:00", "2024-02-29T23:59:59Z",
     "1970-01-01T00:00:00Z", "2999-12-31T23:59:59.9Z"],
)
def test_rfc3339_timestamps_with_an_offset_are_accepted(occurred_at):
    decode_inbound(orjson.dumps({**good("birthday"), "occurred_at": occurred_at}))


def test_optional_fields_and_lenient_basket_lines_are_accepted():
    purchase = {
        **good("purchase"),
        "channel": "online",
        "items": [
            {"sku": "SKU-1"},
            {"sku": "SKU-2", "quantity": 0.375, "amount_minor": -200, "name": "Comté", "tags": []},
        ],
    }
    assert decode_inbound(orjson.dumps(purchase)) == purchase
    decode_inbound(orjson.dumps({**good("redemption"), "cash_top_up_minor": 0}))


def test_bounds_are_inclusive():
    decode_inbound(orjson.dumps({**good("purchase"), "amount_minor": 10**12}))
    decode_inbound(orjson.dumps({**good("redemption"), "points": 1}))
    decode_inbound(orjson.dumps({**good("year_closed"), "year": 1970}))
    decode_inbound(orjson.dumps({**good("purchase"), "event_id": "e" * 128, "member_id": "m" * 64}))


def test_a_message_of_exactly_the_limit_is_accepted():
    raw = orjson.dumps(good("purchase"))
    padded = raw + b" " * (MESSAGE_BYTES_MAX - len(raw))
    assert len(padded) == MESSAGE_BYTES_MAX
    decode_inbound(padded)


# --- inbound events: what is refused, and why -----------------------------------


@pytest.mark.parametrize(("kind", "field"), required_fields())
def test_a_missing_required_field_is_refused_by_name(kind, field):
    event = good(kind)
    del event[field]
    reason, message = reason_and_message(event)
    assert reason == ReasonCode.SCHEMA
    assert f'"{field}"' in message


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("purchase", "amount_minor", "4599"),
        ("purchase", "currency", 978),
        ("purchase", "store_id", None),
        ("refund", "purchase_event_id", ["p-1"]),
        ("referral", "referrer_member_id", {"id": "M-1"}),
        ("birthday", "member_id", 123),
        ("redemption", "points", "500"),
        ("redemption", "reward_id", 7),
        ("year_closed", "year", "2024"),
        ("purchase", "event_id", 1),
        ("purchase", "occurred_at", 1710408413),
        ("purchase", "items", {"sku": "SKU-1"}),
        ("purchase", "channel", "kiosk"),
    ],
)
def test_a_field_of_the_wrong_type_is_refused_with_its_path(kind, field, value):
    reason, message = reason_and_message({**good(kind), field: value})
    assert reason == ReasonCode.SCHEMA
    assert message.startswith(f"/{field}:")


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("purchase", "amount_minor", 0),
        ("purchase", "amount_minor", -1),
        ("purchase", "amount_minor", 10**12 + 1),
        ("refund", "amount_minor", 0),
        ("refund", "amount_minor", -4599),
        ("redemption", "points", 0),
        ("redemption", "points", -5),
        ("redemption", "cash_top_up_minor", -1),
        ("year_closed", "year", 1969),
        ("year_closed", "year", 3000),
        ("purchase", "event_id", ""),
        ("purchase", "event_id", "e" * 129),
        ("purchase", "member_id", "m" * 65),
        ("purchase", "store_id", ""),
        ("purchase", "currency", "eur"),
        ("purchase", "currency", "EURO"),
        ("purchase", "currency", "EUR\n"),
    ],
)
def test_a_value_out_of_bounds_is_refused_with_its_path(kind, field, value):
    reason, message = reason_and_message({**good(kind), field: value})
    assert reason == ReasonCode.SCHEMA
    assert message.startswith(f"/{field}:")


@pytest.mark.parametrize(
    ("kind", "field"),
    [("purchase", "amount_minor"), ("refund", "amount_minor"), ("redemption", "points"),
     ("redemption", "cash_top_up_minor"), ("year_closed", "year"), ("birthday", "schema_version")],
)
@pytest.mark.parametrize("flag", [True, False])
def test_a_boolean_is_not_an_integer(kind, field, flag):
    reason, message = reason_and_message({**good(kind), field: flag})
    assert reason == ReasonCode.SCHEMA
    assert message.startswith(f"/{field}:")


@pytest.mark.parametrize("literal", [b"4599.0", b"4.599e3", b"4599E0"])
def test_an_integer_written_with_a_fraction_or_exponent_is_refused(literal):
    # JSON Schema counts 4599.0 as an integer; the ledger only takes integer literals.
    raw = orjson.dumps({**good("purchase"), "amount_minor": 1})
    raw = raw.replace(b'"amount_minor":1', b'"amount_minor":' + literal)
    reason, message = reason_and_message(raw)
    assert reason == ReasonCode.SCHEMA
    assert message.startswith("/amount_minor:")


def test_a_basket_line_amount_with_a_fraction_is_refused_with_its_path():
    purchase = {**good("purchase"), "items": [{"sku": "A"}, {"sku": "B", "amount_minor": 100.0}]}
    assert reason_and_message(purchase) == (
        ReasonCode.SCHEMA,
        f"/items/1/amount_minor: {INTEGER_LITERAL_RULE}",
    )


@pytest.mark.parametrize(
    "occurred_at",
    [
        "2025-03-14T09:26:53",  # no offset
        "2025-03-14",
        "2025-03-14 09:26:53Z",
        "2025-03-14t09:26:53z",
        "2025-03-14T09:26:53+0100",
        "2025-03-14T09:26:60Z",  # leap second
        "2025-02-30T09:26:53Z",  # no such day: the format check
        "1969-12-31T23:59:59Z",
        "3000-01-01T00:00:00Z",
        "2025-03-14T09:26:53.1234567891Z",
        "2025-03-14T24:00:00Z",
        "yesterday",
        "",
    ],
)
def test_a_timestamp_without_offset_or_out_of_shape_is_refused(occurred_at):
    reason, message = reason_and_message({**good("purchase"), "occurred_at": occurred_at})
    assert reason == ReasonCode.SCHEMA
    assert message.startswith("/occurred_at:")


def test_an_unknown_field_is_refused_by_name():
    # The classic typo: amount instead of amount_minor.
    event = good("purchase")
    event["amount"] = event.pop("amount_minor")
    reason, message = reason_and_message(event)
    assert reason == ReasonCode.SCHEMA
    assert "'amount'" in message and '"amount_minor"' in message


@pytest.mark.parametrize(
    "items",
    [[{"sku": f"S{i}"} for i in range(1001)], [{"quantity": 1}], [{"sku": "A", "quantity": 0}],
     [{"sku": "A", **{f"extra_{i}": i for i in range(32)}}], ["SKU-1"]],
)
def test_basket_lines_are_lenient_but_bounded(items):
    reason, message = reason_and_message({**good("purchase"), "items": items})
    assert reason == ReasonCode.SCHEMA
    assert message.startswith("/items")


@pytest.mark.parametrize("kind", ["gift", "Purchase", "purchase ", "x" * 1000])
def test_an_unknown_type_has_its_own_reason(kind):
    reason, message = reason_and_message({**good("purchase"), "type": kind})
    assert reason == ReasonCode.UNKNOWN_TYPE
    assert message.startswith("/type:")
    quoted = message.split("; known:")[0]
    assert len(quoted) < 120 and "'; known: " in message  # a long type is quoted clipped


@pytest.mark.parametrize("kind", [None, 5, ["purchase"], {"purchase": 1}])
def test_a_missing_or_non_string_type_is_a_schema_failure(kind):
    event = good("purchase")
    if kind is None:
        del event["type"]
    else:
        event["type"] = kind
    reason, message = reason_and_message(event)
    assert reason == ReasonCode.SCHEMA
    assert "type" in message


@pytest.mark.parametrize(
    ("version", "reason"),
    [(2, "unknown_version"), (0, "unknown_version"), ("1", "schema"), (1.5, "schema"),
     (1.0, "schema"), (None, "schema")],
)
def test_schema_version(version, reason):
    got, message = reason_and_message({**good("refund"), "schema_version": version})
    assert got == reason
    assert message.startswith("/schema_version:")


def test_an_oversize_message_is_refused_before_parsing():
    # Not even JSON: the size check comes first.
    assert reason_and_message(b"x" * (MESSAGE_BYTES_MAX + 1))[0] == ReasonCode.TOO_LARGE
    padded = orjson.dumps(good("purchase")) + b" " * MESSAGE_BYTES_MAX
    reason, message = reason_and_message(padded)
    assert reason == ReasonCode.TOO_LARGE
    assert str(MESSAGE_BYTES_MAX) in message


def test_the_size_limit_is_passed_explicitly():
    raw = orjson.dumps(good("birthday"))
    decode_inbound(raw, message_bytes_max=len(raw))
    with pytest.raises(InvalidInput) as caught:
        decode_inbound(raw, message_bytes_max=len(raw) - 1)
    assert caught.value.reason_code == ReasonCode.TOO_LARGE


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe",
        orjson.dumps(good("purchase")).replace(b"M-000123", b"M-\xc3\x28"),  # invalid UTF-8 inside
        b'{"type": "\\ud800"}',  # a lone surrogate
        b"\xef\xbb\xbf" + orjson.dumps(good("purchase")),  # a byte order mark
        b"not json",
        b"{",
        b'{"a": NaN}',
        b"Infinity",
        b"[1e400]",
        b"",
        b'{"type": "purchase"} trailing',
        b"[" * 2000 + b"]" * 2000,  # deeper than the parser goes
    ],
)
def test_bytes_that_are_not_utf8_json_are_not_json(raw):
    assert reason_and_message(raw)[0] == ReasonCode.NOT_JSON


def test_a_null_message_value_is_not_json():
    # A tombstone (null value) on the inbound topic is refused, not a crash.
    with pytest.raises(InvalidInput) as caught:
        decode_inbound(None)
    assert caught.value.reason_code == ReasonCode.NOT_JSON


@pytest.mark.parametrize(
    "raw", [b"[]", b'[{"type": "purchase"}]', b'"purchase"', b"42", b"null", b"true"]
)
def test_json_that_is_not_an_object_is_refused(raw):
    reason, message = reason_and_message(raw)
    assert reason == ReasonCode.NOT_AN_OBJECT
    assert message.startswith("expected a JSON object")


def test_several_problems_are_reported_together_and_the_message_is_bounded():
    event = {**good("purchase"), "amount_minor": -1, "currency": "eur", "store_id": "", "extra": 1}
    reason, message = reason_and_message(event)
    assert reason == ReasonCode.SCHEMA
    assert message.count("; ") == 2  # at most three errors are spelled out
    long_value = {**good("purchase"), "store_id": "s" * 50_000}
    assert len(reason_and_message(long_value)[1]) <= 1024


def test_invalid_input_carries_code_and_message():
    error = InvalidInput(ReasonCode.SCHEMA, "/x: bad")
    assert (error.reason_code, error.message) == ("schema", "/x: bad")
    assert str(error) == "schema: /x: bad"
    assert isinstance(error, ValueError)


# --- outbound documents ------------------------------------------------------------


def tier_changed(**changes) -> dict:
    return {**schemas.load_schema("outbound/tier_changed.v1.json")["examples"][0], **changes}


@pytest.mark.parametrize(
    "changes",
    [
        {"reason": "birthday"},
        {"from_tier": "Gold"},
        {"ledger_position": 0},
        {"ledger_position": 17.0},
        {"ledger_position": True},
        {"effective_at": "2025-03-14T09:26:53"},
        {"extra": 1},
        {"event_id": ""},
        {"type": "tier_change"},
        {"schema_version": 2},
    ],
)
def test_a_bad_tier_changed_is_refused(changes):
    with pytest.raises(InvalidOutput) as caught:
        validate_outbound("tier_changed", tier_changed(**changes))
    assert str(caught.value).startswith("tier_changed: ")
    assert next(iter(changes)) in str(caught.value)  # the message names the field


@pytest.mark.parametrize(
    "field",
    ["event_id", "member_id", "from_tier", "to_tier", "reason", "effective_at", "ledger_position"],
)
def test_tier_changed_requires_every_contract_field(field):
    document = tier_changed()
    del document[field]
    with pytest.raises(InvalidOutput, match=f'"{field}" is a required property'):
        validate_outbound("tier_changed", document)


def test_an_unknown_outbound_name_is_a_programming_error():
    with pytest.raises(KeyError):
        validate_outbound("tier_change", tier_changed())


def test_a_refused_message_becomes_a_valid_dead_letter_that_keeps_the_bytes():
    raw = orjson.dumps({**good("purchase"), "amount_minor": 0})
    with pytest.raises(InvalidInput) as caught:
        decode_inbound(raw)
    moment = datetime(2025, 3, 14, 10, 26, 54, 12000, tzinfo=timezone(timedelta(hours=1)))
    letter = dead_letter_document(
        value=raw,
        key=b"M-000123",
        reason_code=caught.value.reason_code,
        reason_message=caught.value.message,
        source_topic="loyalty.events",
        source_partition=3,
        source_offset=120553,
        attempts=1,
        dead_lettered_at=moment,
    )
    assert base64.b64decode(letter["value_base64"]) == raw
    assert letter["value_preview"] == raw.decode()
    assert letter["key_base64"] == "TS0wMDAxMjM="
    assert letter["reason_code"] == "schema"
    assert letter["dead_lettered_at"] == "2025-03-14T09:26:54.012000Z"
    # It survives the trip through JSON unchanged.
    validate_outbound("dead_letter", orjson.loads(orjson.dumps(letter)))


def test_a_dead_letter_of_undecodable_bytes_has_no_preview_and_a_null_key():
    letter = dead_letter_document(
        value=b"\xff\xfe", key=None, reason_code=ReasonCode.NOT_JSON,
        reason_message="not valid UTF-8 JSON", **WHERE_AND_WHEN,
    )
    assert letter["value_base64"] == "//4="
    assert (letter["value_preview"], letter["key_base64"]) == (None, None)
    # A tombstone: null value, empty key, empty message.
    tombstone = dead_letter_document(
        value=None, key=b"", reason_code="not_json", reason_message="", **WHERE_AND_WHEN
    )
    assert (tombstone["value_base64"], tombstone["value_preview"]) == (None, None)
    assert (tombstone["key_base64"], tombstone["reason_message"]) == ("", "(no message)")


@pytest.mark.parametrize(
    "changes",
    [
        {"value_base64": "not base64!"},
        {"key_base64": "TS0"},
        {"source_partition": -1},
        {"source_offset": 1.0},
        {"attempts": 0},
        {"reason_code": "Schema"},
        {"source_topic": "loyalty events"},
        {"value_preview": "x" * 1025},
        {"dead_lettered_at": "2025-03-14 09:26:54Z"},
    ],
)
def test_a_bad_dead_letter_is_refused(changes):
    example = schemas.load_schema("outbound/dead_letter.v1.json")["examples"][0]
    with pytest.raises(InvalidOutput):
        validate_outbound("dead_letter", {**example, **changes})


def test_a_dead_letter_needs_a_timezone_aware_time():
    with pytest.raises(ValueError, match="offset"):
        dead_letter_document(
            value=b"{}", key=None, reason_code="schema", reason_message="x", source_topic="t",
            source_partition=0, source_offset=0, attempts=1, dead_lettered_at=datetime(2025, 1, 1),
        )


# --- properties: nothing but InvalidInput, whatever arrives -------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


def field_values(kind: str) -> st.SearchStrategy:
    """Events of ``kind`` with some fields replaced by, or extended with, arbitrary JSON."""
    base = good(kind)
    names = st.sampled_from(sorted(base) + ["items", "amount", "year"])
    replacements = st.dictionaries(names, json_values, max_size=3)
    removals = st.sets(st.sampled_from(sorted(base)), max_size=2)

    def mangle(new: dict, gone: set) -> dict:
        return {key: value for key, value in {**base, **new}.items() if key not in gone}

    return st.builds(mangle, replacements, removals)


def decode_or_refuse(raw: bytes) -> None:
    try:
        event = decode_inbound(raw)
    except InvalidInput as error:
        assert error.reason_code in set(ReasonCode)
        assert error.message
        return
    # Whatever is accepted is an event of a known type whose integers are ints.
    assert event["type"] in INBOUND_TYPES
    assert type(event["schema_version"]) is int


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_value_is_decoded_or_refused_with_invalid_input(value):
    # The standard library writes NaN, Infinity and integers beyond 64 bits: all must be handled.
    decode_or_refuse(json.dumps(value).encode())


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(INBOUND_TYPES).flatmap(field_values))
def test_any_mangled_event_is_decoded_or_refused_with_invalid_input(event):
    decode_or_refuse(json.dumps(event).encode())


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_any_bytes_are_decoded_or_refused_with_invalid_input(raw):
    decode_or_refuse(raw)


def test_a_document_nested_too_deep_for_the_validator_is_invalid_input():
    deep = b'{"type": "purchase", "items": ' + b"[" * 600 + b"]" * 600 + b"}"
    with pytest.raises(InvalidInput) as raised:
        decode_inbound(deep)
    assert raised.value.reason_code == "schema"
