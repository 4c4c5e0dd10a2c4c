"""A whole local stack (Redis and the three service processes, with Prometheus ports), shared by the system tests
that look at it from outside: the live view in a browser and the dashboards' metric names."""

from __future__ import annotations

import pytest

from blinkstack.local.processes import free_port
from blinkstack.local.stack import Stack, StackConfig


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory):
    metrics = {name: free_port() for name in ("detector", "eyestate", "aggregator")}
    config = StackConfig.on_free_ports(tmp_path_factory.mktemp("live-stack"), metrics=True, metrics_ports=metrics)
    with Stack(config) as running:
        yield running
