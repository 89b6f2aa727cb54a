"""The till API over real HTTP (CONTRACT section 14): a ``loyalty api`` process and
``loyalty worker`` processes on the embedded broker and PostgreSQL.

Stories: a till reads a member, quotes a basket, earns and redeems at once
(read-your-writes through the log); the same event_id posted five times at
once has one outcome; another payload under that id is refused; keys are
checked (401, 403, 429); an invalid event is refused with the dead-letter
reason and nothing is produced.
"""

from __future__ import annotations

import uuid

import httpx
import jsonschema_rs
import pytest

import schemas
from streams.api.keys import key_store
from tests.support import builders as b
from tests.support.api import messages_in, post_concurrently, running_stack, warm_up

REPLY_TIMEOUT_MS = 20_000  # the worker may still be joining its group at the first write
WARM_UP_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, embedded_pg, tmp_path_factory):
    with running_stack(kafka_bootstrap, embedded_pg, tmp_path_factory.mktemp("api"),
                       reply_timeout_ms=REPLY_TIMEOUT_MS) as stack:
        warm_up(stack)
        yield stack


@pytest.fixture(scope="module")
def till(stack):
    with stack.client(stack.key()) as client:
        yield client


def member() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and body["message"], body
    return body


# ------------------------------------------------------------------ reads


def test_a_purchase_answers_its_outcome_and_the_member_reads_from_the_ledger(till):
    m = member()
    purchase = b.purchase(m, "2025-03-01T10:00:00+01:00", 12399)
    response = till.post("/v1/events", json=purchase)
    answer = response.json()
    stages = {metric.split(";")[0] for metric in response.headers["Server-Timing"].split(", ")}
    assert {"recorded", "produced", "ledger", "reread"} <= stages  # where the reply's time went
    assert answer == {"event_id": purchase["event_id"], "member_id": m, "outcome": "points_earned",
                      "reason": None, "points": 123, "balance": 123, "held": 0, "pending": 0,
                      "version": answer["version"]}
    view = till.get(f"/v1/members/{m}").json()
    assert view["balance"] == 123 and view["version"] == answer["version"]
    assert (view["held"], view["pending"], view["debt"], view["discount_pct"]) == (0, 0, 0, 0)
    assert (view["tier"], view["next_tier"], view["spend_to_next_tier"]) == ("bronze", "silver", 50000 - 12399)
    assert view["lots"] == [{"lot_id": 1, "points": 123, "expires_at": "2026-03-01T09:00:00Z",
                             "active_from": "2025-03-01T09:00:00Z"}]
    assert view["holds"] == [] and view["clock"] == "2025-03-01T09:00:00Z"


def test_as_of_history_and_unknown_members(till):
    m = member()
    till.post("/v1/events", json=b.purchase(m, "2025-03-01T10:00:00Z", 10000))
    till.post("/v1/events", json=b.purchase(m, "2025-04-01T10:00:00Z", 20000))
    then = till.get(f"/v1/members/{m}", params={"as_of": "2025-03-15T00:00:00Z"}).json()
    assert then["balance"] == 100
    assert_error(till.get(f"/v1/members/{m}", params={"as_of": "2025-02-01T00:00:00Z"}), 404, "unknown_member")
    for bad in ("yesterday", "2025-03-01", "0001-01-01T00:00:00+01:00"):
        assert_error(till.get(f"/v1/members/{m}", params={"as_of": bad}), 422, "invalid_request")
    assert_error(till.get(f"/v1/members/{m}/history", params={"after_version": 2**70}), 422, "invalid_request")
    facts = till.get(f"/v1/members/{m}/history", params={"after_version": 1, "limit": 1}).json()["facts"]
    assert [(f["version"], f["type"]) for f in facts] == [(2, "points_earned")]
    assert facts[0]["source_event_id"].startswith("purchase-") and facts[0]["source_position"]
    assert_error(till.get(f"/v1/members/{member()}"), 404, "unknown_member")
    assert_error(till.get(f"/v1/members/{member()}/history"), 404, "unknown_member")


def test_a_quote_says_what_a_basket_earns_and_writes_nothing(till):
    m = member()
    version = till.post("/v1/events", json=b.purchase(m, "2025-03-01T10:00:00Z", 60000)).json()["version"]
    body = {k: v for k, v in b.purchase(m, "2025-03-02T10:00:00Z", 10000).items() if k != "event_id"}
    quote = till.post("/v1/quote", json=body).json()
    assert quote == {"member_id": m, "tier": "silver", "base_points": 100, "multiplier_pct": 125,
                     "points": 125, "debt_paid": 0, "rejected_reason": None, "campaigns": []}
    assert till.get(f"/v1/members/{m}").json()["version"] == version
    assert_error(till.post("/v1/quote", json={**body, "event_id": "x"}), 422, "schema")
    assert_error(till.post("/v1/quote", json={**body, "amount_minor": 1.5}), 422, "schema")


# ----------------------------------------------------------------- writes


def test_the_same_event_id_posted_five_times_at_once_has_one_outcome(stack, till):
    m = member()
    purchase = b.purchase(m, "2025-05-01T10:00:00Z", 5000)
    answers = post_concurrently(stack, stack.key(), purchase)
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1 and answers[0].json()["outcome"] == "points_earned"
    history = till.get(f"/v1/members/{m}/history").json()["facts"]
    caused = [f["type"] for f in history if f["source_event_id"] == purchase["event_id"]]
    assert caused.count("points_earned") == 1

    produced = messages_in(stack)
    again = till.post("/v1/events", json=purchase)  # applied: the recorded outcome, nothing produced
    assert again.json() == answers[0].json() and messages_in(stack) == produced
    conflict = assert_error(till.post("/v1/events", json={**purchase, "amount_minor": 5001}), 409,
                            "event_id_conflict")
    assert purchase["event_id"] in conflict["message"] and messages_in(stack) == produced


def test_a_purchase_then_at_once_a_redemption_of_its_points_from_another_till(stack, till):
    m = member()
    other_till = stack.client(stack.key(["redeem", "read"]))
    earned = till.post("/v1/events", json=b.purchase(m, "2025-06-01T10:00:00Z", 40000)).json()
    assert earned["balance"] == 400
    redeemed = other_till.post("/v1/events", json=b.redemption(m, "2025-06-01T10:00:01Z", 400)).json()
    assert (redeemed["outcome"], redeemed["points"], redeemed["balance"]) == ("points_redeemed", 400, 0)
    refused = other_till.post("/v1/events", json=b.redemption(m, "2025-06-01T10:00:02Z", 1)).json()
    assert (refused["outcome"], refused["reason"], refused["points"]) == (
        "redemption_rejected", "insufficient_points", 0)
    outcome = till.get(f"/v1/events/{refused['event_id']}", params={"member_id": m}).json()
    assert outcome == refused
    assert_error(till.get("/v1/events/never-sent", params={"member_id": m}), 404, "no_outcome")
    other_till.close()


def test_an_invalid_event_is_refused_with_the_dead_letter_reason_and_nothing_is_produced(stack, till):
    produced = messages_in(stack)
    bad = {**b.purchase(member(), "2025-03-01T10:00:00Z", 100), "amount": 100}
    assert "amount" in assert_error(till.post("/v1/events", json=bad), 422, "schema")["message"]
    assert_error(till.post("/v1/events", content=b"{not json"), 422, "not_json")
    assert_error(till.post("/v1/events", json={**bad, "type": "teleport"}), 422, "unknown_type")
    huge = {**b.purchase(member(), "2025-03-01T10:00:00Z", 100), "store_id": "s" * 1_000_000}
    assert_error(till.post("/v1/events", json=huge), 422, "too_large")
    assert messages_in(stack) == produced


# ------------------------------------------------------------------- keys


def test_keys_scopes_and_store_bindings(stack):
    event = b.purchase(member(), "2025-03-01T10:00:00Z", 100, store="store-7")
    with stack.client(None) as anonymous:
        assert_error(anonymous.post("/v1/events", json=event), 401, "unauthorized")
    with stack.client("lk_000000000000_not-a-key") as unknown:
        assert_error(unknown.get("/v1/members/x"), 401, "unauthorized")
    revoked = stack.key()
    with key_store(stack.settings.database_url) as keys:
        assert keys.revoke(revoked.split("_")[1])
    with stack.client(revoked) as client:
        assert_error(client.get("/v1/members/x"), 401, "unauthorized")
    with stack.client(stack.key(["read"])) as reader:
        assert_error(reader.post("/v1/events", json=event), 403, "forbidden")
    with stack.client(stack.key(["earn"])) as earner:
        assert_error(earner.get("/v1/members/x"), 403, "forbidden")
    with stack.client(stack.key(["earn", "redeem"], stores=["store-1"])) as bound:
        assert_error(bound.post("/v1/events", json=event), 403, "forbidden")  # another store's
        no_store = b.redemption(member(), "2025-03-01T10:00:00Z", 1)
        assert_error(bound.post("/v1/events", json=no_store), 403, "forbidden")  # no store_id
        own = b.purchase(member(), "2025-03-01T10:00:00Z", 100, store="store-1")
        assert bound.post("/v1/events", json=own).json()["outcome"] == "points_earned"


def test_past_the_rate_limit_a_key_gets_429_with_retry_after(stack):
    api = stack.start_api(api_rate_requests_per_s=1, api_rate_burst_requests=3)
    with stack.client(stack.key(), api) as client:
        statuses = [client.get("/v1/members/nobody").status_code for _ in range(3)]
        assert statuses == [404, 404, 404]
        limited = client.get("/v1/members/nobody")
        assert_error(limited, 429, "rate_limited")
        assert int(limited.headers["Retry-After"]) >= 1
    with stack.client(stack.key(), api) as another_key:
        assert another_key.get("/v1/members/nobody").status_code == 404


# ---------------------------------------------------------- the documents


def test_openapi_bodies_are_the_schemas_of_schemas_folder(till):
    document = till.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    body = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/inbound_event_v1"}
    components = document["components"]["schemas"]
    purchase_file = schemas.load_schema("inbound/purchase.v1.json")
    assert set(components["inbound_purchase_v1"]["properties"]) == set(purchase_file["properties"])
    registry = jsonschema_rs.Registry([("urn:openapi", document)])
    validator = jsonschema_rs.validator_for({"$ref": "urn:openapi#/components/schemas/inbound_event_v1"},
                                            registry=registry)
    for example in purchase_file["examples"]:
        assert validator.is_valid(example)
    assert not validator.is_valid({**purchase_file["examples"][0], "amount": 1})
    quote = components["quote_request"]
    assert "event_id" not in quote["properties"] and "event_id" not in quote["required"]


def test_health_and_metrics(till):
    assert till.get("/healthz").json() == {"status": "ok"}
    till.get("/v1/members/nobody-at-all")
    text = till.get("/metrics").text
    assert 'loyalty_api_requests_total{route="/v1/members/{member_id}",status="404"}' in text
    assert "loyalty_api_reply_latency_seconds_count" in text
    assert "loyalty_api_replies_timed_out_total" in text


def test_the_api_stops_cleanly_on_sigterm(stack):
    api = stack.start_api()
    api.stop()
    assert api.process.returncode == 0, api.log_path.read_text()[-2000:]
