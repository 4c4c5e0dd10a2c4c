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
