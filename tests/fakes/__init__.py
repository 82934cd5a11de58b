"""Test doubles that speak the real protocols (LiveKit rooms, ...): the one place for fakes."""
