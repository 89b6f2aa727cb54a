"""The developer kit: embedded PostgreSQL and broker, the simulator, the demo and its dashboard.

Nothing on a production path (worker, relay, follower, the ledger, the
projections) imports this package; the developer-facing commands (``demo``,
``process``, ``simulate``) import it lazily, inside the command.
"""
