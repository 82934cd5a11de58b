"""The commands README.md and docs/getting-started.md print work from a fresh login shell
with nothing added to PATH by hand.

Each fenced ``bash`` block is read command by command (continuation lines joined,
comments, here-documents and ``&&``/``;``/``|`` chains split). Every program must resolve
in ``env -i HOME=$HOME bash -lc 'command -v PROG'`` run from the repository root: a
``.venv/bin/...`` path exists (the bootstrap made it), ``make`` is installed, and nothing
leans on a PATH entry only a developer's shell has (``uv``, ``nats``, a bare
``corevoice``). The cheap commands (``--help``) are also run, the same way; those that
start the stack or need it running (``make up``, ``make test``, ``corevoice call``) are
resolved only.
"""

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = (ROOT / "README.md", ROOT / "docs" / "getting-started.md")
FORBIDDEN = frozenset({"uv", "nats", "corevoice", "lk", "livekit-server", "nats-server"})
"""On a developer's PATH (``~/.local/bin``, ``.bin``), not on a fresh login shell's."""
FENCE = re.compile(r"^```(\w*)\s*$")
SEPARATORS = re.compile(r"\s*(?:&&|\|\||;|\|)\s*")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")


@dataclass(frozen=True)
class Command:
    document: str
    line: str
    argv: tuple[str, ...]

    @property
    def program(self) -> str:
        return self.argv[0]

    @property
    def cheap(self) -> bool:
        """Safe to run in a unit test: asks for help and starts nothing."""
        return "--help" in self.argv or self.argv[-1:] == ("help",)


def bash_blocks(text: str) -> list[list[str]]:
    """The lines of every fenced block marked ``bash`` or ``sh``."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        fence = FENCE.match(line.strip())
        if fence and current is None:
            current = [] if fence.group(1) in ("bash", "sh", "shell", "console") else None
            if current is None:
                current = ["<skip>"]
            continue
        if fence and current is not None:
            if current[:1] != ["<skip>"]:
                blocks.append(current)
            current = None
            continue
        if current is not None:
            current.append(line)
    return blocks


def logical_lines(block: list[str]) -> list[str]:
    """Continuations joined, here-document bodies dropped, comment lines dropped."""
    lines: list[str] = []
    pending = ""
    terminator: str | None = None
    for raw in block:
        if terminator is not None:
            if raw.strip() == terminator:
                terminator = None
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line.startswith("#"):
            continue
        if heredoc := HEREDOC.search(line):
            terminator = heredoc.group(1)
            line = line[: heredoc.start()]
        lines.append(line)
    return lines


def commands(path: Path) -> list[Command]:
    found: list[Command] = []
    for block in bash_blocks(path.read_text()):
        for line in logical_lines(block):
            words = shlex.split(line, comments=True)
            text = " ".join(words)
            for part in SEPARATORS.split(text):
                argv = [w for w in part.split() if w]
                while argv and ASSIGNMENT.match(argv[0]):
                    argv.pop(0)
                if argv and not argv[0].startswith(("$", "(", ")")):
                    found.append(Command(path.name, line, tuple(argv)))
    return found


def fresh_shell(script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a login shell with an empty environment but HOME, from the root."""
    return subprocess.run(
        ["env", "-i", f"HOME={os.environ['HOME']}", "bash", "-lc", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


ALL = [command for document in DOCUMENTS for command in commands(document)]


def test_the_documents_have_commands() -> None:
    programs = {command.program for command in ALL}
    assert {"make", ".venv/bin/corevoice"} <= programs, programs
    assert any(c.document == "getting-started.md" for c in ALL)


def test_the_parser() -> None:
    block = [
        "# a comment",
        "A=1 make up   # trailing comment",
        ".venv/bin/corevoice call --agent-id demo \\",
        '    --say "hi there" && echo done | cat',
        ".venv/bin/python - <<'EOF'",
        "import this",
        "EOF",
    ]
    argvs = []
    for line in logical_lines(block):
        words = shlex.split(line, comments=True)
        for part in SEPARATORS.split(" ".join(words)):
            argv = [w for w in part.split() if w]
            while argv and ASSIGNMENT.match(argv[0]):
                argv.pop(0)
            argvs.append(argv[0] if argv else "")
    assert argvs == ["make", ".venv/bin/corevoice", "echo", "cat", ".venv/bin/python"]


@pytest.mark.parametrize("command", ALL, ids=lambda c: f"{c.document}:{' '.join(c.argv)[:60]}")
def test_the_program_resolves_in_a_fresh_login_shell(command: Command) -> None:
    assert command.program not in FORBIDDEN, (
        f"{command.document}: `{command.line}` needs `{command.program}` on PATH, which a "
        f"fresh login shell lacks; use `make ...` or `.venv/bin/...`"
    )
    resolved = fresh_shell(f"command -v {shlex.quote(command.program)}")
    assert resolved.returncode == 0 and resolved.stdout.strip(), (
        f"{command.document}: `{command.program}` (in `{command.line}`) does not resolve in "
        f"a fresh login shell from the repository root"
    )


CHEAP = [command for command in ALL if command.cheap]


def test_some_commands_are_cheap_enough_to_run() -> None:
    assert CHEAP, "no --help command found to run"


@pytest.mark.parametrize("command", CHEAP, ids=lambda c: " ".join(c.argv)[:60])
def test_the_cheap_commands_run(command: Command) -> None:
    result = fresh_shell(shlex.join(command.argv))
    assert result.returncode == 0, f"`{command.line}`: {result.stderr[-2000:]}"
