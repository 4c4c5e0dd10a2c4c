"""The contracts' conventions, read from the committed stubs."""

from __future__ import annotations

from blinkstack.v1 import aggregator_pb2, detector_pb2, eyestate_pb2, types_pb2


def test_enums_start_with_unspecified_zero():
    for module in (types_pb2, eyestate_pb2, detector_pb2, aggregator_pb2):
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            assert enum.values[0].number == 0 and enum.values[0].name.endswith("_UNSPECIFIED"), enum.full_name


def test_every_service_lives_in_the_versioned_package():
    names = [
        service.full_name
        for module in (eyestate_pb2, detector_pb2, aggregator_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
    ]
    assert sorted(names) == [
        "blinkstack.v1.AggregatorService",
        "blinkstack.v1.DetectorService",
        "blinkstack.v1.EyeStateService",
    ]


def test_the_duration_limits_the_contract_quotes_are_the_engines_defaults():
    """aggregator.proto tells clients what a BLINK, WINK and LONG_CLOSURE are; it once said 50-500 ms while the
    engine counted blinks up to 1000 ms."""
    from blinkstack.aggregator.track_state import EngineConfig
    from tests.helpers import REPO_ROOT

    text = " ".join((REPO_ROOT / "protos/blinkstack/v1/aggregator.proto").read_text().replace("//", " ").split())
    d = EngineConfig()
    assert f"blink duration limits (default {d.blink_min_ms:g}-{d.blink_max_ms:g} ms)" in text
    assert f"wink duration limits (default {d.blink_min_ms:g}-{d.wink_max_ms:g} ms)" in text
    assert f"long-closure limit (default {d.long_closure_ms:g} ms)" in text
    assert f"durations (default {', '.join(f'{s:g}' for s in d.closure_alerts_s)} s;" in text
    assert f"in microseconds (default {d.window_s:g} s)" in text
