"""Hostile inbound text and numbers fail validation with a message a person can act on.

PostgreSQL text cannot hold NUL, so every free-text field of every inbound
type refuses it in the schema itself (a NUL that got through was applied and
then broke every read-model write). Numbers are reported as they were
written, and a pattern is explained rather than dumped.
"""

from __future__ import annotations

import orjson
import pytest

import schemas
from streams.validation import INBOUND_TYPES, NUL_MESSAGE, InvalidInput, ReasonCode, decode_inbound

SCHEMA_NAMES = [name for name in schemas.schema_names() if name.startswith("inbound/")]


def examples(kind: str) -> list[dict]:
    return [dict(example) for example in schemas.load_schema(f"inbound/{kind}.v1.json")["examples"]]


def string_paths(document: object, path: tuple = ()) -> list[tuple]:
    """Every path to a string value in ``document`` except ``type`` (its enum refuses NUL anyway)."""
    if isinstance(document, dict):
        return [p for key, value in document.items() if key != "type"
                for p in string_paths(value, path + (key,))]
    if isinstance(document, list):
        return [p for index, value in enumerate(document) for p in string_paths(value, path + (index,))]
    return [path] if isinstance(document, str) else []


def with_nul(document: dict, path: tuple) -> dict:
    copy = orjson.loads(orjson.dumps(document))
    node = copy
    for token in path[:-1]:
        node = node[token]
    node[path[-1]] = node[path[-1]] + "\x00x"
    return copy


def refusal(raw: bytes) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        decode_inbound(raw)
    return caught.value


def free_text_schemas(node: object) -> list[dict]:
    """Every string-typed subschema without an enum or const (it could hold any text)."""
    found = []
    if isinstance(node, dict):
        if node.get("type") == "string" and "enum" not in node and "const" not in node:
            found.append(node)
        for value in node.values():
            found += free_text_schemas(value)
    elif isinstance(node, list):
        for value in node:
            found += free_text_schemas(value)
    return found


@pytest.mark.parametrize("name", SCHEMA_NAMES + ["common.v1.json"])
def test_every_free_text_schema_has_a_pattern_refusing_nul(name):
    import re

    texts = free_text_schemas(schemas.load_schema(name))
    for text in texts:
        assert "pattern" in text, f"{name}: a string without a pattern may hold NUL: {text}"
        assert not re.search(text["pattern"].replace("\\u0000", "\x00"), "a\x00b")


@pytest.mark.parametrize("kind", INBOUND_TYPES)
def test_nul_in_any_text_field_of_any_type_fails_the_schema_with_a_clear_message(kind):
    cases = [(example, path) for example in examples(kind) for path in string_paths(example)]
    assert cases
    for example, path in cases:
        refused = refusal(orjson.dumps(with_nul(example, path)))
        assert refused.reason_code == ReasonCode.SCHEMA, path
        pointer = "/" + "/".join(str(token) for token in path)
        assert f"{pointer}: {NUL_MESSAGE}" in refused.message


def test_a_huge_integer_is_reported_as_written():
    raw = orjson.dumps(examples("purchase")[0]).replace(b'"amount_minor":4599',
                                                      b'"amount_minor":' + str(10**30).encode())
    refused = refusal(raw)
    assert refused.message == (f"/amount_minor: {10**30} is greater than the maximum of 1000000000000")


def test_a_date_before_1970_is_explained_not_dumped_as_a_regex():
    event = examples("birthday")[0] | {"occurred_at": "1969-07-20T20:17:00Z"}
    refused = refusal(orjson.dumps(event))
    assert refused.message.startswith("/occurred_at: '1969-07-20T20:17:00Z' is not an RFC 3339 time")
    assert "[0-9]" not in refused.message


def test_nesting_deep_enough_to_break_a_recursive_parser_is_not_json():
    depth = 30_000
    raw = b'{"type":"purchase","items":' + b"[" * depth + b"]" * depth + b"}"
    assert len(raw) < 64 * 1024
    assert refusal(raw).reason_code == ReasonCode.NOT_JSON


def test_invalid_utf8_is_not_json():
    raw = orjson.dumps(examples("referral")[0]).replace(b"M-000123", b"M-\xff\xfe")
    assert refusal(raw).reason_code == ReasonCode.NOT_JSON


def test_the_workers_and_the_producer_share_one_named_size_limit():
    from streams.producer import producer_request_bytes_max
    from streams.settings import Settings
    from streams.validation import MESSAGE_BYTES_MAX

    limit = Settings.from_env({"LOYALTY_MESSAGE_BYTES_MAX": "1000"}).message_bytes_max
    assert (Settings().message_bytes_max, limit) == (MESSAGE_BYTES_MAX, 1000)
    assert producer_request_bytes_max(limit) > 2 * limit  # a key as long as the value still fits


def test_a_huge_line_is_counted_not_held(tmp_path):
    from streams.producer import OversizedLine, read_lines

    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\r\n' + b"x" * (3 * 1024 * 1024) + b"\n" + b'{"b": 2}')
    small, huge, last = read_lines(path, line_bytes_max=1000)
    assert (small, last) == (b'{"a": 1}', b'{"b": 2}')
    assert isinstance(huge, OversizedLine) and huge.size_bytes == 3 * 1024 * 1024 and len(huge) <= 4096
