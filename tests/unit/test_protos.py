"""The committed stubs are what the codegen script makes from the committed .proto files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from blinkstack.v1 import aggregator_pb2, detector_pb2, eyestate_pb2, types_pb2
from tests.helpers import REPO_ROOT

COMMITTED = REPO_ROOT / "services" / "blinkstack" / "v1"


def _generate(out: Path) -> None:
    spec = importlib.util.spec_from_file_location("generate", REPO_ROOT / "protos" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.generate(out)


def test_generated_stubs_are_fresh(tmp_path):
    _generate(tmp_path)
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "blinkstack" / "v1").iterdir() if p.is_file()}
    committed = {p.name: p.read_bytes() for p in COMMITTED.iterdir() if p.is_file()}
    stale = sorted(name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name))
    assert not stale, f"stale generated files (run protos/generate.py): {stale}"


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
