"""Benchmarks of lakeport against a real local Kafka broker (`python -m benchmarks.ingest`)."""
