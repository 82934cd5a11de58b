"""Operators' tools: the local stack, synthetic calls, benchmarks."""
