"""Every contract message round-trips through its decoder with every field set.

Values are generated from each field's type (`msgspec.inspect`) and differ from the
field's default, so a field that an encoder drops or a decoder misreads cannot hide
behind its default, and a field added tomorrow is covered without touching this test. A
type with no generator here fails, naming the field, until `candidates` learns it.
"""

import datetime as dt
from collections.abc import Callable
from typing import Any, get_args

import msgspec
import msgspec.inspect as mi
import pytest

from core_voice_contracts import codec, events
from core_voice_contracts.pool_link import HEADER, LinkMessage, decode_body, encode_frame
from core_voice_contracts.room import RoomMetadata, decode_room_metadata, encode_room_metadata
from core_voice_contracts.routing import RouteReply, RouteRequest
from core_voice_contracts.runtime_config import RuntimeConfig

pytestmark = pytest.mark.unit

AT = dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)


def _members(union: object) -> tuple[type[msgspec.Struct], ...]:
    return get_args(union) or (union,)


def _json(decode: Callable[[bytes], object]) -> Callable[[msgspec.Struct], object]:
    return lambda message: decode(codec.encode(message))


def _link(message: Any) -> object:
    return decode_body(encode_frame(message)[HEADER.size :])


def _room(message: Any) -> object:
    return decode_room_metadata(encode_room_metadata(message))


FAMILIES: dict[str, tuple[Callable[[Any], object], tuple[type[msgspec.Struct], ...]]] = {
    "job event": (_json(codec.decode_job_event), _members(events.JobEvent)),
    "call event": (_json(codec.decode_call_event), _members(events.CallEvent)),
    "config event": (_json(codec.decode_config_event), _members(events.ConfigEvent)),
    "config stream event": (
        _json(codec.decode_config_stream_event),
        _members(events.ConfigStreamEvent),
    ),
    "config request": (_json(codec.decode_config_request), _members(events.ConfigGetRequest)),
    "config reply": (_json(codec.decode_config_reply), _members(events.ConfigGetReply)),
    "worker event": (_json(codec.decode_worker_event), _members(events.WorkerEvent)),
    "route request": (_json(codec.decode_route_request), _members(RouteRequest)),
    "route reply": (_json(codec.decode_route_reply), _members(RouteReply)),
    "runtime config": (_json(codec.decode_runtime_config), (RuntimeConfig,)),
    "pool link": (_link, _members(LinkMessage)),
    "room metadata": (_room, (RoomMetadata,)),
}

EVERY_MESSAGE: set[type[msgspec.Struct]] = {
    *events.ALL_MESSAGES,
    *_members(LinkMessage),
    RouteRequest,
    *_members(RouteReply),
    RoomMetadata,
    RuntimeConfig,
}

CASES = sorted(
    ((family, type_) for family, (_, types) in FAMILIES.items() for type_ in types),
    key=lambda case: (case[0], case[1].__name__),
)


def candidates(t: mi.Type, where: str) -> list[Any]:
    """Two or more distinct values of type ``t``, so one differs from any default."""
    match t:
        case mi.StrType():
            return [f"x-{where}", f"y-{where}"]
        case mi.BoolType():
            return [True, False]
        case mi.IntType():
            return [7, 8]
        case mi.FloatType():
            return [1.5, 2.5]
        case mi.DateTimeType():
            return [AT, AT + dt.timedelta(seconds=1)]
        case mi.EnumType():
            return list(t.cls)
        case mi.LiteralType():
            return list(t.values)
        case mi.ListType():
            return [[value] for value in candidates(t.item_type, where)]
        case mi.DictType():
            return [{"k": value} for value in candidates(t.value_type, where)]
        case mi.AnyType():
            return ["any", 1]
        case mi.UnionType():
            options = [member for member in t.types if not isinstance(member, mi.NoneType)]
            return [value for member in options for value in candidates(member, where)]
        case mi.StructType():
            return [every_field_set(t.cls)]
    raise LookupError(f"no non-default value for {t!r} ({where}): teach `candidates` this type")


def every_field_set(type_: type[msgspec.Struct]) -> msgspec.Struct:
    """An instance of ``type_`` whose every field differs from its default."""
    info = mi.type_info(type_)
    assert isinstance(info, mi.StructType)
    values: dict[str, Any] = {}
    for field in info.fields:
        where = f"{type_.__name__}.{field.name}"
        if field.default is not msgspec.NODEFAULT:
            default: Any = field.default
        elif field.default_factory is not msgspec.NODEFAULT:
            default = field.default_factory()
        else:
            default = msgspec.NODEFAULT
        choice = [value for value in candidates(field.type, where) if value != default]
        assert choice, f"every candidate for {where} equals its default {default!r}"
        values[field.name] = choice[0]
    return type_(**values)


def test_every_message_has_a_round_trip_case() -> None:
    missing = EVERY_MESSAGE - {type_ for _, type_ in CASES}
    assert not missing, sorted(t.__name__ for t in missing)


@pytest.mark.parametrize(("family", "type_"), CASES, ids=lambda v: getattr(v, "__name__", v))
def test_every_field_round_trips_with_a_non_default_value(
    family: str, type_: type[msgspec.Struct]
) -> None:
    message = every_field_set(type_)
    decode, _ = FAMILIES[family]
    assert decode(message) == message


def test_a_field_of_a_type_with_no_generator_fails_loudly() -> None:
    class Unknown(msgspec.Struct, frozen=True, kw_only=True):
        when: dt.date

    with pytest.raises(LookupError, match=r"Unknown\.when"):
        every_field_set(Unknown)
