"""An event's four forms (engine, Redis fields, message, JSON) convert into each other without loss."""

from __future__ import annotations

import pytest

from blinkstack.aggregator import engine, event_forms
from blinkstack.v1 import aggregator_pb2


@pytest.mark.parametrize("kind", list(engine.EventType))
@pytest.mark.parametrize("phase", list(engine.Phase))
def test_every_event_survives_fields_message_and_json(kind, phase):
    event = engine.Event(kind, phase, 1_000_000, 1_180_000, 0.0123, truncated=phase == engine.Phase.ENDED)
    fields = event_forms.to_fields(event, "cam-1", 7)
    assert all(isinstance(v, str) for v in fields.values())  # Redis stream fields are strings
    message = event_forms.to_message("1700000000000-3", fields)
    assert event_forms.type_name(message) == kind.name and event_forms.phase_name(message) == phase.name
    assert (message.stream_id, message.track_id, message.start_us, message.end_us) == ("cam-1", 7, 1_000_000, 1_180_000)
    assert message.duration_ms == 180 and message.min_prob_open == pytest.approx(0.0123)
    assert message.truncated == event.truncated and message.key == event.key("cam-1", 7)
    as_json = event_forms.to_json(message)
    assert as_json["type"] == kind.name and as_json["phase"] == phase.name and as_json["id"] == "1700000000000-3"
    assert f"{kind.name}" in event_forms.describe(message) and "track 7" in event_forms.describe(message)


def test_engine_and_proto_enums_agree_by_name():
    assert set(event_forms.TYPE_NUMBERS) == {t.name for t in engine.EventType}
    for kind in engine.EventType:  # the engine's values are the proto's, so stored numbers mean the same
        assert aggregator_pb2.EventType.Value(f"EVENT_TYPE_{kind.name}") == kind.value


def test_a_type_newer_than_the_client_is_shown_by_number():
    assert event_forms.type_name(aggregator_pb2.BlinkEvent(type=99)) == "99"


def test_event_ids_sort_by_time_then_sequence_and_unstored_first():
    ids = ["1700000000001-0", "", "1700000000000-10", "1700000000000-2"]
    assert sorted(ids, key=event_forms.id_order) == ["", "1700000000000-2", "1700000000000-10", "1700000000001-0"]
