"""Turns the Core Voice event streams into Prometheus metrics."""
