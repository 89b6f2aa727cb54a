"""The event store's PostgreSQL adapters: the only code that speaks SQL to the event store.

- ``urls``: ``postgresql://`` URLs -> eventsourcing's settings, and one database's address;
- ``recorder``: eventsourcing's process recorder without psycopg's pipeline mode;
- ``transcoder``: eventsourcing's JSON format, done by orjson;
- ``log_reader``: every read of the notification log (``ledger.log`` decodes it): bounded
  id ranges read ahead, the relay's next batch, counts and versions by topic.
"""
