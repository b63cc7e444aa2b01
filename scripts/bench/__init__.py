"""Benchmarks of the service against a fake upstream with fixed latencies (`make bench`)."""
