"""Predict throughput and latency under load: `python -m bench.predict` (see run.py)."""
