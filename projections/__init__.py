"""Read models of the ledger (CONTRACT section 4), replay and the auditor's tools.

- ``balances``, ``tiers``, ``annual``, ``kpis``: one read model each (tables,
  tracking recorder, projection with one handler per fact type);
  ``kpi_report``: the programme KPIs from the ``kpis`` tables, defined in
  ``kpi_definitions``, shown by ``kpi_tables`` and drawn by ``kpi_charts``;
- ``base``, ``rows``: what the read models share (recorder, projection,
  batched row access);
- ``runner``: open, catch up, replay, resume, digests; ``follower``: the live loop;
- ``figures``: a member's figures computed from the ledger alone;
  ``verify`` compares the read models with them; ``auditor`` shows them;
- ``export``: JSONL/CSV exports, and ``loyalty process``'s read-model files;
- ``year_end``: the year-end job's ``year_closed`` events.

The commands (``replay``, ``verify``, ``member``, ``export``, ``close-year``)
are in ``streams/cli/audit.py``; nothing here imports ``streams``.
"""
