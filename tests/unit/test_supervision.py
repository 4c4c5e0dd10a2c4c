"""`blinkstack up`'s restart policy: the supervisor against processes that really exit (`true`), with launching
and the SERVING wait replaced: the policy is the unit here, not the services."""

from __future__ import annotations

import subprocess

import pytest

from blinkstack.local import stack as stack_module
from blinkstack.local.stack import MAX_BACKOFF_S, Stack, StackConfig, StackError, _Service
from blinkstack.services import DETECTOR


def dead_process() -> subprocess.Popen:
    process = subprocess.Popen(["true"])
    process.wait()
    return process


def test_a_component_that_comes_back_serving_is_restarted_however_often_it_dies(tmp_path, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(stack_module.time, "sleep", waits.append)
    stack = Stack(StackConfig(data_dir=tmp_path))
    service = _Service("detector", DETECTOR, 1, {}, dead_process(), tmp_path / "detector.log")
    stack.services = [service]
    launches = []
    monkeypatch.setattr(stack, "_launch", lambda *a: (launches.append(a) or dead_process(), tmp_path / "d.log"))
    monkeypatch.setattr(stack, "_wait_serving", lambda s: None)  # each restart became SERVING (then died again)
    reports: list[str] = []
    for _ in range(12):  # killed twelve times in a row: never given up on
        stack.supervise(reports.append)
    assert len(launches) == 12
    assert waits[:4] == [0.5, 1.0, 2.0, 4.0] and max(waits) == MAX_BACKOFF_S
    assert "restarting in 0.5 s" in reports[0]


def test_a_restart_that_never_serves_stops_the_stack(tmp_path, monkeypatch):
    monkeypatch.setattr(stack_module.time, "sleep", lambda s: None)
    stack = Stack(StackConfig(data_dir=tmp_path))
    stack.services = [_Service("detector", DETECTOR, 1, {}, dead_process(), tmp_path / "detector.log")]
    monkeypatch.setattr(stack, "_launch", lambda *a: (dead_process(), tmp_path / "d.log"))

    def never_serving(service: _Service) -> None:
        raise StackError("detector exited with code 1")

    monkeypatch.setattr(stack, "_wait_serving", never_serving)
    with pytest.raises(StackError, match="exited with code 1"):
        stack.supervise(lambda line: None)
