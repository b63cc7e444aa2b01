"""Traces (OpenTelemetry), metrics (Prometheus) and the access log."""
