"""Generated requests over the till API's own ``/openapi.json``: no 5xx, every 4xx a
JSON body naming the problem.

Hypothesis draws an operation of the document, its path and query parameters
(from the parameters the document declares, valid and not) and, for the two
bodies, one of the ``examples`` the document carries for an inbound type
(so the JSON Schemas of ``schemas/``) with a fresh ``event_id`` and one of a
few members, left valid most of the time and otherwise broken one way (a
field dropped, retyped or added, or bytes that are not JSON). Every request
carries a valid key with every scope. ``FUZZ_REQUESTS`` is sized for a loaded
2-core machine; at least a fifth of the answers must be 2xx (the generator
really reaches the ledger).
"""

from __future__ import annotations

import json

import uuid
from collections import Counter
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.api import running_stack, warm_up

FUZZ_REQUESTS = 300
SUCCESS_SHARE_MIN = 0.2
REPLY_TIMEOUT_MS = 20_000
MEMBERS = [f"fz-{n}" for n in range(4)]
EVENT_TYPES_PREFIX = "inbound_"
ANY_EVENT_COMPONENT = "inbound_event_v1"
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                           | st.text(max_size=10), lambda inner: st.lists(inner, max_size=3), max_leaves=5)
ID_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
VALID_BODY_WEIGHT = 8  # against one for each way of breaking a body
RUN = uuid.uuid4().hex[:8]
EVENT_IDS_MAX = 100_000  # posted ids seldom repeat (a repeat with another payload is a 409)
EVENT_IDS = st.integers(0, EVENT_IDS_MAX).map(lambda n: f"fz-{RUN}-{n}")
TIMES = st.sampled_from(["2025-03-01T10:00:00Z", "2030-01-01T00:00:00+02:00", "2000-01-01T00:00:00Z"])


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, embedded_pg, tmp_path_factory):
    with running_stack(kafka_bootstrap, embedded_pg, tmp_path_factory.mktemp("fuzz"),
                       reply_timeout_ms=REPLY_TIMEOUT_MS, api_rate_requests_per_s=100_000,
                       api_rate_burst_requests=100_000) as stack:
        warm_up(stack)
        yield stack


def examples(document: dict) -> list[dict]:
    components = document["components"]["schemas"]
    return [example for name, schema in components.items()
            if name.startswith(EVENT_TYPES_PREFIX) and name != ANY_EVENT_COMPONENT
            for example in schema.get("examples", [])]


def operations(document: dict) -> list[tuple[str, str, dict]]:
    return [(method.upper(), path, operation) for path, methods in document["paths"].items()
            for method, operation in methods.items()]


@st.composite
def bodies(draw, samples: list[dict], with_event_id: bool) -> bytes:
    event = {**draw(st.sampled_from(samples)), "member_id": draw(st.sampled_from(MEMBERS)),
             "event_id": draw(EVENT_IDS)}
    if not with_event_id:
        event.pop("event_id")
    breakage = draw(st.sampled_from(["none"] * VALID_BODY_WEIGHT + ["drop", "retype", "extra", "bytes"]))
    field = draw(st.sampled_from(sorted(event)))
    if breakage == "drop":
        event.pop(field)
    elif breakage == "retype":
        event[field] = draw(JSON_VALUES)
    elif breakage == "extra":
        event[draw(st.text(min_size=1, max_size=8))] = draw(JSON_VALUES)
    elif breakage == "bytes":
        return draw(st.binary(max_size=40))
    return json.dumps(event).encode()  # the standard library writes integers of any size


def mostly(valid: st.SearchStrategy, other: st.SearchStrategy) -> st.SearchStrategy:
    """``valid`` three times in four."""
    return st.one_of(valid, valid, valid, other)


def parameter_value(draw, parameter: dict) -> str:
    if parameter["schema"].get("type") == "integer":
        return str(draw(mostly(st.sampled_from([0, 1, 2, 100]), st.integers())))
    if parameter["name"] == "as_of":
        return draw(mostly(TIMES, st.text(max_size=12)))
    if parameter["name"] == "member_id":
        return draw(mostly(st.sampled_from(MEMBERS), ID_TEXT))
    return draw(mostly(EVENT_IDS, ID_TEXT))


@st.composite
def requests(draw, document: dict) -> tuple[str, str, dict, bytes | None]:
    method, path, operation = draw(st.sampled_from(operations(document)))
    query = {}
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", quote(parameter_value(draw, parameter), safe=""))
        elif parameter.get("required") or draw(st.booleans()):
            query[parameter["name"]] = parameter_value(draw, parameter)
    body = None
    if method == "POST":
        quoting = path == "/v1/quote"
        samples = [e for e in examples(document) if not quoting or e["type"] == "purchase"]
        body = draw(bodies(samples, with_event_id=not quoting))
    return method, path, query, body


def test_generated_requests_get_no_5xx_and_named_4xx(stack):
    with stack.client(stack.key()) as till:
        document = till.get("/openapi.json").json()
        statuses: list[int] = []

        @settings(max_examples=FUZZ_REQUESTS, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        @given(requests(document))
        def request_is_answered(request) -> None:
            method, path, query, body = request
            answer = till.request(method, path, params=query, content=body,
                                  headers={"Content-Type": "application/json"})
            statuses.append(answer.status_code)
            assert answer.status_code < 500, (method, path, query, body, answer.text)
            if answer.status_code >= 400:
                problem = answer.json()
                assert isinstance(problem["error"], str) and problem["message"], answer.text

        request_is_answered()
    assert len(statuses) >= FUZZ_REQUESTS
    successes = sum(200 <= status < 300 for status in statuses)
    assert successes >= SUCCESS_SHARE_MIN * len(statuses), Counter(statuses)
