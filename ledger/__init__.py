"""The loyalty ledger: domain model, program rules and application service.

Layers point inward: ``domain``, ``rules``, ``commands``, ``calendar``,
``program``, ``credits`` (what a fact owes another account) and ``routing``
(which output each fact goes to) do no I/O; ``application`` loads, decides
and saves through eventsourcing, and ``log`` reads its committed facts;
``settings`` is what every process shares (``LedgerSettings``);
``postgres/`` holds the PostgreSQL adapters (URLs, recorder, transcoder, log
reader). Nothing here imports ``streams`` or ``projections``.
"""
