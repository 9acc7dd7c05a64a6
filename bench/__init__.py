"""Benchmarks, each printing one JSON object: `python -m bench NAME [options]`."""
