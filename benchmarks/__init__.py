"""Benchmarks: run each file as a script (``python benchmarks/overhead.py``)."""
