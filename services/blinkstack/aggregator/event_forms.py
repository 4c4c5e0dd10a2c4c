"""One event, four forms, converted only here: the engine's `Event` -> Redis stream fields -> the `BlinkEvent`
message -> JSON and a printable line for the tools.

Names come from the engine's enums and the proto's (`EVENT_TYPE_` + name), so a new event type needs no table.
"""

from __future__ import annotations

import re
from typing import cast

from blinkstack.aggregator import engine
from blinkstack.v1 import aggregator_pb2

# A Redis stream id, `<ms>-<n>` (`<ms>` alone as a cursor): ASCII digits only (`\d` takes "٣", which Redis does
# not), at most 20 of them (2^64 has 20), so int() never sees a 4,301-digit string.
EVENT_ID = re.compile(r"[0-9]{1,20}(-[0-9]{1,20})?")
_EYES = {"BLINK": "both", "WINK_LEFT": "left", "WINK_RIGHT": "right", "LONG_CLOSURE": "both"}
TYPE_NUMBERS = {t.name: aggregator_pb2.EventType.Value(f"EVENT_TYPE_{t.name}") for t in engine.EventType}
_PHASE_NUMBERS = {p.name: aggregator_pb2.EventPhase.Value(f"EVENT_PHASE_{p.name}") for p in engine.Phase}


def to_fields(event: engine.Event, stream_id: str, track_id: int) -> dict[str, str]:
    """The engine's event as the string fields of a Redis stream entry."""
    return {
        "stream_id": stream_id,
        "track_id": str(track_id),
        "type": event.type.name,
        "phase": event.phase.name,
        "start_us": str(event.start_us),
        "end_us": str(event.end_us),
        "duration_ms": str(round(event.duration_ms)),
        "min_prob_open": repr(float(event.min_prob_open)),
        "truncated": "1" if event.truncated else "0",
        "key": event.key(stream_id, track_id),
        "level": str(int(event.level)),
        "escalation": str(event.escalation),
    }


def to_message(event_id: str, fields: dict[str, str]) -> aggregator_pb2.BlinkEvent:
    """A stored event (its stream id and fields) as the message clients receive."""
    return aggregator_pb2.BlinkEvent(
        id=event_id,
        stream_id=fields["stream_id"],
        track_id=int(fields["track_id"]),
        type=TYPE_NUMBERS[fields["type"]],
        phase=_PHASE_NUMBERS[fields["phase"]],
        start_us=int(fields["start_us"]),
        end_us=int(fields["end_us"]),
        duration_ms=int(fields["duration_ms"]),
        min_prob_open=float(fields["min_prob_open"]),
        truncated=fields["truncated"] == "1",
        key=fields["key"],
        # Events stored before drowsiness levels have neither field.
        level=cast(aggregator_pb2.DrowsinessLevel, int(fields.get("level", 0))),
        escalation=int(fields.get("escalation", 0)),
    )


def type_name(event: aggregator_pb2.BlinkEvent) -> str:
    """BLINK, WINK_LEFT, WINK_RIGHT or LONG_CLOSURE (a type newer than this client: its number)."""
    if event.type not in aggregator_pb2.EventType.values():
        return str(event.type)
    return aggregator_pb2.EventType.Name(event.type).removeprefix("EVENT_TYPE_")


def phase_name(event: aggregator_pb2.BlinkEvent) -> str:
    """STARTED or ENDED."""
    return aggregator_pb2.EventPhase.Name(event.phase).removeprefix("EVENT_PHASE_")


def to_json(event: aggregator_pb2.BlinkEvent) -> dict:
    """The fields a tool writes to events.json and `blinkstack events --format json|csv` prints."""
    return {
        "id": event.id,
        "type": type_name(event),
        "phase": phase_name(event),
        "track_id": event.track_id,
        "start_us": event.start_us,
        "end_us": event.end_us,
        "duration_ms": event.duration_ms,
        "stream_id": event.stream_id,
        "level": level_name(event),
        "escalation": event.escalation,
        "key": event.key,
        "cursor": event.cursor,  # SubscribeBlinks' position after this event: `events --after` resumes from it
    }


def level_name(event: aggregator_pb2.BlinkEvent) -> str:
    """AWAKE, DROWSY or ASLEEP for DROWSINESS events, else empty."""
    if not event.level:
        return ""
    return aggregator_pb2.DrowsinessLevel.Name(event.level).removeprefix("DROWSINESS_LEVEL_")


def describe(event: aggregator_pb2.BlinkEvent) -> str:
    """One printable line, as `blinkstack watch` and `blinkstack events` show it."""
    name = type_name(event)
    if event.type == aggregator_pb2.EVENT_TYPE_DROWSINESS:
        what = f"eyes closed {event.duration_ms} ms, alert {event.escalation}" if event.escalation else "level"
        return (
            f"DROWSINESS {level_name(event)}  track {event.track_id}  {what}  start {event.start_us / 1e6:8.3f} s  "
            f"id {event.id}"
        )
    phase = " started" if event.phase == aggregator_pb2.EVENT_PHASE_STARTED else ""
    return (
        f"{name}{phase}  track {event.track_id}  eye {_EYES.get(name, '?')}  "
        f"start {event.start_us / 1e6:8.3f} s  duration {event.duration_ms} ms  id {event.id}"
    )


def is_event_id(text: str) -> bool:
    """A Redis stream id, `<ms>-<n>` or `<ms>`, each part below 2^64 (Redis refuses larger ones)."""
    return EVENT_ID.fullmatch(text) is not None and all(int(part) < 2**64 for part in text.split("-"))


def id_order(event_id: str) -> tuple[int, int]:
    """Sort key of a Redis stream id (or of an event id, `@<shard>` ignored); an event not stored yet (empty id)
    sorts first."""
    ms, _, n = event_id.partition("@")[0].partition("-")
    return (int(ms), int(n or 0)) if ms else (0, 0)
