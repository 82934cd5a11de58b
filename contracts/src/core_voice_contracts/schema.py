"""JSON Schema of every message, checked in under ``contracts/schemas/v<N>/``.

A schema sits under the version in its message's tag (`events.tag`; v1 for the untagged
runtime config and room metadata), so a breaking change's v2 lands beside v1 instead of
over it. ``python -m core_voice_contracts.schema [DIR]`` rewrites them; a test fails
when the checked-in files differ from what the types produce.
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


def version_of(type_: type[msgspec.Struct]) -> int:
    """The version that ends a message's tag (``job.requested.v1`` -> 1); 1 if untagged."""
    tag = type_.__struct_config__.tag
    if isinstance(tag, str) and (suffix := tag.rpartition(".v")[2]).isdigit():
        return int(suffix)
    return 1


def render() -> dict[str, str]:
    """Path relative to the schema directory (``v1/JobRequested.json``) -> JSON text."""
    out: dict[str, str] = {}
    for type_ in SCHEMA_TYPES:
        schema = msgspec.json.schema(type_)
        name = f"v{version_of(type_)}/{type_.__name__}.json"
        out[name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def read(directory: Path = DEFAULT_DIR) -> dict[str, str]:
    """What is checked in, keyed like `render`."""
    return {p.relative_to(directory).as_posix(): p.read_text() for p in directory.glob("v*/*.json")}


def write(directory: Path = DEFAULT_DIR) -> list[Path]:
    for stale in directory.glob("v*/*.json"):
        stale.unlink()
    written = []
    for name, text in render().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR
    for p in write(target):
        print(p)  # noqa: T201
