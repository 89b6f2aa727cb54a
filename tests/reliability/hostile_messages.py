"""Hostile inbound messages for the fuzz test, drawn with hypothesis.

``hostile_messages(count, seed)`` returns at least ``count`` ``Fuzzed``
messages (key bytes or None, value bytes or None, the kind of damage). Each
starts from a valid event of a random type whose ids are hostile text (SQL
and shell metacharacters, quotes, unicode) and then breaks it one way, so
that every one MUST be dead-lettered:

wrong JSON types, huge numbers (beyond the schema's maxima and beyond 64
bits), huge strings (over a field's maxLength, or a whole message over
``MESSAGE_BYTES_MAX``), deep nesting, invalid UTF-8, timestamps without an
offset or malformed, negative and zero amounts, integers written as floats,
unknown fields, unknown types and versions, JSON that is not an object,
bytes that are not JSON, empty values, and valid events whose Kafka key is
not their ``member_id`` (``key_mismatch``).

``expected_reasons`` lists the dead-letter reasons each kind may end in.
Generation runs hypothesis' ``@given`` in rounds of ``ROUND_EXAMPLES_MAX``
examples, seeded, so a run is reproducible and takes seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from streams.validation import INBOUND_TYPES, MESSAGE_BYTES_MAX

ROUND_EXAMPLES_MAX = 2500
HUGE_STRING_CHARS_MAX = 5000          # over every maxLength (64/128) without slowing the run
OVERSIZED_EXTRA_BYTES_MAX = 4096      # messages just over MESSAGE_BYTES_MAX
NESTING_DEPTH_MAX = 3000              # beyond orjson's recursion limit (1024)
ROUNDS_MAX = 40

SQL_AND_SHELL = [
    "'; DROP TABLE loyalty_events; --", "\" OR 1=1 --", "$$", "$1", "%s", "%(x)s", "\\", "`rm -rf /`",
    "$(reboot)", "|| true", "; ls", "&& echo pwned", "${IFS}", "' UNION SELECT * FROM pg_user --",
    "Robert'); DROP TABLE students;--", "\u202e", "\ufeff", "ǅ", "🦄", "NULL", "../../etc/passwd",
]

HOSTILE_ALPHABET = "aZ09-_ '\"`;$|&<>(){}[]*?!#%\\/\n\t\r~^=+,.:@éßЖ中文🦄\u202e\ufeff\u0301"
hostile_text = st.one_of(  # 1 to 60 characters, never NUL (PostgreSQL text cannot hold it)
    st.sampled_from(SQL_AND_SHELL),
    st.text(alphabet=HOSTILE_ALPHABET, min_size=1, max_size=30),
    st.tuples(st.sampled_from(SQL_AND_SHELL), st.text(alphabet=HOSTILE_ALPHABET, max_size=10)).map(
        "".join),
)

timestamps = st.sampled_from(["2025-03-01T10:00:00Z", "2024-12-31T23:59:59+01:00",
                              "2025-06-15T08:30:00.123456-04:00"])


@st.composite
def valid_events(draw) -> dict:
    """A schema-valid event of any inbound type, with hostile ids."""
    kind = draw(st.sampled_from(INBOUND_TYPES))
    text = draw(hostile_text)  # one draw for every id: hypothesis' cost is per draw
    event = {"type": kind, "schema_version": 1, "event_id": f"{text}#e",
             "member_id": text, "occurred_at": draw(timestamps)}
    amount = st.integers(min_value=1, max_value=10**12)
    if kind == "purchase":
        event |= {"amount_minor": draw(amount), "currency": "EUR", "store_id": f"{text}#s"}
    elif kind == "refund":
        event |= {"purchase_event_id": f"{text}#p", "amount_minor": draw(amount),
                  "currency": "EUR", "store_id": f"{text}#s"}
    elif kind == "referral":
        event |= {"referrer_member_id": f"{text}#r"}
    elif kind == "redemption":
        event |= {"points": draw(amount), "reward_id": f"{text}#w"}
    elif kind == "year_closed":
        event |= {"year": draw(st.integers(min_value=1970, max_value=2999))}
    elif kind == "adjustment":
        event |= {"points": draw(amount), "reason_code": f"{text}#c", "operator_id": f"{text}#o"}
    elif kind == "transfer":
        event |= {"to_member_id": f"{text}#t", "points": draw(amount)}
    elif kind in ("member_enrolled", "profile_updated"):
        event |= {"profile": {"name": f"{text}#n"}}
    elif kind == "nps_response":
        event |= {"score": draw(st.integers(min_value=0, max_value=10)), "touchpoint": f"{text}#t"}
    elif kind == "redemption_hold":
        event |= {"points": draw(amount), "reward_id": f"{text}#w", "expires_at": draw(timestamps)}
    elif kind in ("redemption_capture", "redemption_void"):
        event |= {"hold_event_id": f"{text}#h"}
    elif kind == "redemption_cancel":
        event |= {"redemption_event_id": f"{text}#x"}
    return event


INTEGER_FIELDS = {"purchase": ["amount_minor"], "refund": ["amount_minor"],
                  "redemption": ["points"], "year_closed": ["year"],
                  "adjustment": ["points"], "transfer": ["points"], "redemption_hold": ["points"]}
STRING_FIELDS = ["event_id", "member_id", "occurred_at"]
MAX_LENGTHS = {"event_id": 128, "member_id": 64, "store_id": 64, "purchase_event_id": 128,
               "referrer_member_id": 64}
AMOUNT_FIELDS = {"purchase": "amount_minor", "refund": "amount_minor", "redemption": "points"}


@dataclass(frozen=True)
class Fuzzed:
    kind: str
    key: bytes | None
    value: bytes | None


def _encode(event) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode("utf-8")


def _key(draw, event: dict) -> bytes | None:
    """Usually the member id (as a producer would send it), sometimes anything."""
    member = event.get("member_id") if isinstance(event, dict) else None
    if isinstance(member, str) and draw(st.booleans()):
        return member.encode("utf-8")
    return draw(st.one_of(st.none(), st.binary(max_size=80), hostile_text.map(str.encode)))


def _wrong_json_value(draw, current):
    options = [None, True, [], {}, [current], {"v": current}, 1.5, 0, "1", -1]
    return draw(st.sampled_from([o for o in options if type(o) is not type(current)]))


@st.composite
def wrong_type(draw) -> Fuzzed:
    event = draw(valid_events())
    field = draw(st.sampled_from(STRING_FIELDS + INTEGER_FIELDS.get(event["type"], []) + ["schema_version"]))
    event[field] = _wrong_json_value(draw, event[field])
    return Fuzzed("wrong_type", _key(draw, event), _encode(event))


@st.composite
def huge_number(draw) -> Fuzzed:
    event = draw(valid_events().filter(lambda e: e["type"] in INTEGER_FIELDS))
    field = draw(st.sampled_from(INTEGER_FIELDS[event["type"]]))
    event[field] = draw(st.one_of(st.integers(min_value=10**12 + 1, max_value=2**64),
                                  st.integers(min_value=2**64, max_value=10**400),
                                  st.integers(max_value=-(2**63)).map(lambda n: n - 1)))
    return Fuzzed("huge_number", _key(draw, event), _encode(event))


@st.composite
def huge_string(draw) -> Fuzzed:
    event = draw(valid_events())
    fields = [f for f in MAX_LENGTHS if f in event]
    field = draw(st.sampled_from(fields))
    length = draw(st.integers(min_value=MAX_LENGTHS[field] + 1, max_value=HUGE_STRING_CHARS_MAX))
    event[field] = draw(st.sampled_from(["x", "'", "é", "🦄", "$$"])) * length
    return Fuzzed("huge_string", _key(draw, event), _encode(event))


@st.composite
def oversized(draw) -> Fuzzed:
    event = draw(valid_events())
    padding = MESSAGE_BYTES_MAX + draw(st.integers(min_value=1, max_value=OVERSIZED_EXTRA_BYTES_MAX))
    event["store_id" if "store_id" in event else "event_id"] = "p" * padding
    return Fuzzed("oversized", _key(draw, event), _encode(event))


@st.composite
def deep_nesting(draw) -> Fuzzed:
    event = draw(valid_events())
    depth = draw(st.integers(min_value=2, max_value=NESTING_DEPTH_MAX))
    nested: object = draw(hostile_text)
    for level in range(depth):
        nested = [nested] if level % 2 else {"n": nested}
    target = draw(st.sampled_from(["extra", "items", "member_id"]))
    event[target] = nested
    value = _encode(event) if depth < 900 else _deep_bytes(event, target, depth)
    return Fuzzed("deep_nesting", _key(draw, event), value)


def _deep_bytes(event: dict, target: str, depth: int) -> bytes:
    """json.dumps recurses too; build the deep value as text."""
    shallow = dict(event)
    shallow[target] = "__DEEP__"
    deep = "[" * depth + "1" + "]" * depth
    return _encode(shallow).replace(b'"__DEEP__"', deep.encode())


@st.composite
def invalid_utf8(draw) -> Fuzzed:
    event = draw(valid_events())
    raw = _encode(event)
    bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
                                b"\xe2\x82", b"\x80", b"\xc0\xaf"]))
    where = raw.index(b'"member_id": "') + len(b'"member_id": "')
    return Fuzzed("invalid_utf8", _key(draw, event), raw[:where] + bad + raw[where:])


@st.composite
def bad_timestamp(draw) -> Fuzzed:
    event = draw(valid_events())
    event["occurred_at"] = draw(st.one_of(
        st.sampled_from(["2025-01-01T10:00:00", "2025-01-01 10:00:00Z", "2025-13-01T10:00:00Z",
                         "2025-02-30T10:00:00Z", "1969-12-31T23:59:59Z", "yesterday", "",
                         "2025-01-01T10:00:00+25:00", "2025-01-01", "1735725600",
                         "2025-01-01T24:00:00Z", "2025-01-01T10:00:00.1234567890Z"]),
        st.datetimes().map(lambda moment: moment.isoformat()),   # naive: no offset
    ))
    return Fuzzed("bad_timestamp", _key(draw, event), _encode(event))


@st.composite
def non_positive_amount(draw) -> Fuzzed:
    event = draw(valid_events().filter(lambda e: e["type"] in AMOUNT_FIELDS))
    event[AMOUNT_FIELDS[event["type"]]] = draw(st.integers(min_value=-10**12, max_value=0))
    return Fuzzed("non_positive_amount", _key(draw, event), _encode(event))


@st.composite
def float_integer(draw) -> Fuzzed:
    event = draw(valid_events().filter(lambda e: e["type"] in INTEGER_FIELDS))
    field = INTEGER_FIELDS[event["type"]][0]
    raw = _encode(event).replace(f'"{field}": {event[field]}'.encode(),
                                 f'"{field}": {event[field]}.0'.encode())
    return Fuzzed("float_integer", _key(draw, event), raw)


@st.composite
def unknown_field(draw) -> Fuzzed:
    event = draw(valid_events())
    name = draw(st.one_of(st.sampled_from(["amount", "points_bonus", "__proto__", "$where"]),
                          hostile_text)).strip() or "x"
    if name in event:
        name = name + "_unknown"
    event[name] = draw(st.one_of(hostile_text, st.integers(), st.none()))
    return Fuzzed("unknown_field", _key(draw, event), _encode(event))


@st.composite
def unknown_type(draw) -> Fuzzed:
    event = draw(valid_events())
    event["type"] = draw(hostile_text.filter(lambda t: t not in INBOUND_TYPES))
    return Fuzzed("unknown_type", _key(draw, event), _encode(event))


@st.composite
def unknown_version(draw) -> Fuzzed:
    event = draw(valid_events())
    event["schema_version"] = draw(st.integers(min_value=-10**6, max_value=10**6).filter(lambda v: v != 1))
    return Fuzzed("unknown_version", _key(draw, event), _encode(event))


@st.composite
def not_an_object(draw) -> Fuzzed:
    value = draw(st.one_of(st.lists(st.integers(), max_size=5), st.integers(), hostile_text,
                           st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False)))
    return Fuzzed("not_an_object", draw(st.one_of(st.none(), st.binary(max_size=20))), _encode(value))


@st.composite
def not_json(draw) -> Fuzzed:
    event = draw(valid_events())
    raw = _encode(event)
    value = draw(st.one_of(
        st.binary(min_size=1, max_size=200).filter(_not_json),
        st.integers(min_value=1, max_value=len(raw) - 1).map(lambda cut: raw[:cut]),  # truncated
        st.sampled_from([b"{'type': 'purchase'}", b"NaN", b"{\"a\":1,}", b"\x00", b"{}{}"]),
        st.just(b""), st.none(),  # empty value, tombstone
    ))
    key = _key(draw, event)
    if value is None and key is None:  # Kafka needs one of them
        key = b"tombstone"
    return Fuzzed("not_json", key, value)


def _not_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return True
    return False


@st.composite
def key_mismatch(draw) -> Fuzzed:
    event = draw(valid_events())
    key = draw(st.one_of(st.none(), st.binary(max_size=40), hostile_text.map(str.encode)).filter(
        lambda k: k != event["member_id"].encode("utf-8")))
    return Fuzzed("key_mismatch", key, _encode(event))


KINDS = {
    "wrong_type": wrong_type, "huge_number": huge_number, "huge_string": huge_string,
    "oversized": oversized, "deep_nesting": deep_nesting, "invalid_utf8": invalid_utf8,
    "bad_timestamp": bad_timestamp, "non_positive_amount": non_positive_amount,
    "float_integer": float_integer, "unknown_field": unknown_field, "unknown_type": unknown_type,
    "unknown_version": unknown_version, "not_an_object": not_an_object, "not_json": not_json,
    "key_mismatch": key_mismatch,
}
ANY_REASON = {"not_json", "not_an_object", "unknown_type", "unknown_version", "schema",
              "too_large", "key_mismatch"}
EXPECTED_REASONS = {
    "wrong_type": {"schema"}, "huge_number": {"schema", "not_json"},
    "huge_string": {"schema", "too_large"}, "oversized": {"too_large"},
    "deep_nesting": {"schema", "not_json", "too_large"}, "invalid_utf8": {"not_json"},
    "bad_timestamp": {"schema"}, "non_positive_amount": {"schema"}, "float_integer": {"schema"},
    "unknown_field": {"schema"}, "unknown_type": {"unknown_type"},
    "unknown_version": {"unknown_version"}, "not_an_object": {"not_an_object"},
    "not_json": {"not_json"}, "key_mismatch": {"key_mismatch"},
}
OVERSIZED_SHARE_MAX = 0.02  # a few messages over 64 KiB, not hundreds of megabytes


def any_hostile_message() -> st.SearchStrategy[Fuzzed]:
    return st.one_of(*(strategy() for strategy in KINDS.values()))


def hostile_messages(count: int, seed_value: int) -> list[Fuzzed]:
    """At least ``count`` hostile messages, reproducibly (hypothesis, seeded rounds)."""
    drawn: list[Fuzzed] = []
    oversized_max = int(count * OVERSIZED_SHARE_MAX)

    def kept() -> int:  # what the trim below keeps
        oversized_drawn = sum(m.kind == "oversized" for m in drawn)
        return len(drawn) - oversized_drawn + min(oversized_drawn, oversized_max)

    for round_number in range(ROUNDS_MAX):
        @settings(max_examples=min(ROUND_EXAMPLES_MAX, count - kept() + 10), database=None,
                  deadline=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @seed(seed_value * 1000 + round_number)
        @given(any_hostile_message())
        def collect(message: Fuzzed) -> None:
            if message.kind == "oversized" and sum(m.kind == "oversized" for m in drawn[-200:]) > 4:
                return
            drawn.append(message)

        collect()
        if kept() >= count:
            break
    oversized = [m for m in drawn if m.kind == "oversized"][:oversized_max]
    return [m for m in drawn if m.kind != "oversized"] + oversized
