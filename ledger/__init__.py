"""The loyalty ledger: domain model, program rules and application service.

Layers point inward: ``domain``, ``rules``, ``commands``, ``calendar`` and
``program`` do no I/O; ``application`` loads, decides and saves through
eventsourcing; ``settings`` is what every process shares (``LedgerSettings``);
``postgres/`` holds the PostgreSQL adapters (URLs, recorder, transcoder, log
reader). Nothing here imports ``streams`` or ``projections``.
"""
