"""The event store's PostgreSQL adapters: the only code that speaks SQL to the event store.

- ``urls``: ``postgresql://`` URLs -> eventsourcing's settings, and one database's address;
- ``recorder``: eventsourcing's process recorder without psycopg's pipeline mode;
- ``transcoder``: eventsourcing's JSON format, done by orjson;
- ``log_reader``: the notification log read in bounded id ranges, read ahead.
"""
