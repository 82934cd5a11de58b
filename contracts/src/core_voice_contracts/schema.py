"""JSON Schema of every message, checked in under ``contracts/schemas/``.

``python -m core_voice_contracts.schema [DIR]`` rewrites them; a test fails when the
checked-in files differ from what the types produce.
"""

import json
import sys
from pathlib import Path

import msgspec

from core_voice_contracts.events import ALL_MESSAGES
from core_voice_contracts.room import RoomMetadata
from core_voice_contracts.routing import RouteError, RouteRejected, RouteRequest, RouteResolved
from core_voice_contracts.runtime_config import RuntimeConfig

SCHEMA_TYPES: tuple[type[msgspec.Struct], ...] = (
    *ALL_MESSAGES,
    RuntimeConfig,
    RoomMetadata,
    RouteRequest,
    RouteResolved,
    RouteRejected,
    RouteError,
)
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "schemas"


def render() -> dict[str, str]:
    """File name -> JSON text for every schema."""
    out: dict[str, str] = {}
    for type_ in SCHEMA_TYPES:
        schema = msgspec.json.schema(type_)
        out[f"{type_.__name__}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def write(directory: Path = DEFAULT_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.json"):
        stale.unlink()
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR
    for p in write(target):
        print(p)  # noqa: T201
