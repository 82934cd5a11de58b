"""Print the chart values of deploy/helm/core-voice/values.yaml as a Markdown table.

Every leaf key path (a list or an empty map is a leaf), its default, and the comment above
it (or above its nearest commented parent). docs/configuration.md's "Chart values" table
is this output; `tests/unit/test_docs_reference.py` checks that every path is there.

    .venv/bin/python scripts/chart_values_table.py [path/to/values.yaml]
"""

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

VALUES = Path(__file__).resolve().parents[1] / "deploy" / "helm" / "core-voice" / "values.yaml"
KEY = re.compile(r"^(\s*)(?:- )?([^\s#:][^:#]*?):(?:\s|$)")


def comments(text: str) -> dict[str, str]:
    """Key path -> the comment lines right above that key."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        if not stripped:
            pending = []
            continue
        match = KEY.match(line)
        if match is None or line.lstrip().startswith("- "):
            pending = []
            continue
        indent, key = len(match.group(1)), match.group(2).strip().strip("\"'")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if pending:
            found[".".join(k for _, k in stack)] = " ".join(pending)
        pending = []
    return found


def leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict) and node:
        out: list[tuple[str, Any]] = []
        for key, value in node.items():
            out += leaves(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    return [(prefix, node)]


def meaning(path: str, notes: dict[str, str]) -> str:
    """The deepest comment on the path, prefixed by its parents' while it is terse."""
    parts = path.split(".")
    said = ""
    for end in range(len(parts), 0, -1):
        note = notes.get(".".join(parts[:end]), "")
        if not note or (end == 1 and len(parts) > 1):  # a section's note heads its table
            continue
        said = f"{note.rstrip('.')}: {said}" if said else note
        if len(said.split()) > 5:
            break
    return said


def table(text: str) -> str:
    """The Markdown: one table per top-level section, headed by its comment."""
    notes = comments(text)
    lines: list[str] = []
    section = None
    for key, value in leaves(yaml.safe_load(text) or {}):
        top = key.split(".")[0] if "." in key else ""
        if top != section:
            if top:
                lines += ["", f"#### `{top}`", "", notes.get(top, "")]
            lines += ["", "| value | default | meaning |", "|---|---|---|"]
        section = top
        default = json.dumps(value) if not isinstance(value, str) else (value or '""')
        cell = meaning(key, notes).replace("|", "\\|")
        lines.append(f"| `{key}` | `{default}` | {cell} |")
    return "\n".join(lines).strip() + "\n"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else VALUES
    sys.stdout.write(table(path.read_text()))


if __name__ == "__main__":
    main()
