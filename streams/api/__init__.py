"""The till API (``loyalty api``, CONTRACT section 14): an entry point on the Kafka side.

- ``app``: the FastAPI routes and their wiring (``create_app(settings)``);
- ``reads``: the ledger's reads on a thread pool (members, history, outcomes, quotes);
- ``writes``: produce an event to ``loyalty.events`` and wait for its outcome;
- ``keys``: API keys (hashed, scoped, store-bound) and their table;
- ``limits``: the per-key rate limit; ``metrics``: the API's Prometheus metrics;
- ``openapi``: the OpenAPI 3.1 document built on ``schemas/``;
- ``server``: uvicorn.
"""
