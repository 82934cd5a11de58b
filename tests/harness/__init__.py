"""What the test modules share: real services started as processes and the helpers that
drive them, one module per thing they hold. Fakes of third parties live in `tests.fakes`;
fixtures in the conftest files."""
