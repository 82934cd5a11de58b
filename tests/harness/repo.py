"""Paths in this repository, for tests that read its files or run its scripts."""

from pathlib import Path


def repo_path(*parts: str) -> Path:
    return Path(__file__).resolve().parents[2].joinpath(*parts)
