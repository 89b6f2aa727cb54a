"""The loyalty ledger: domain model, program rules and application service.

Layers point inward: ``domain`` and ``rules`` do no I/O, ``application``
loads, decides and saves through eventsourcing, ``persistence`` and the
embedded PostgreSQL starter are adapters.
"""
