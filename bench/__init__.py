"""Benchmarks of the loyalty ledger: ``python -m bench`` (see ``bench/run.py``, ``docs/BENCHMARKS.md``)."""
