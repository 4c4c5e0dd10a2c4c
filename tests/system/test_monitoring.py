"""The operations dashboard and alert rules in deploy/ against what the services really export: every metric they
name is scraped from the running stack's (and a real tritonserver's) /metrics after a short real run; the rules
pass `promtool check rules`; the kustomize component renders."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request

import grpc
import numpy as np
import pytest
import yaml

from blinkstack.common import paths
from blinkstack.services import AGGREGATOR, DETECTOR, EYESTATE
from blinkstack.tools.watch import watch
from blinkstack.v1 import aggregator_pb2, aggregator_pb2_grpc
from tests.helpers import REPO_ROOT
from tests.helpers.aggregator import BLINKS, collect, messages
from tests.helpers.engine import timeline

DASHBOARD = REPO_ROOT / "deploy" / "monitoring" / "grafana-dashboard.json"
COMPONENT = REPO_ROOT / "deploy" / "k8s" / "components" / "monitoring"
RULES = COMPONENT / "prometheus-rules.yaml"
METRIC = re.compile(r"\b(blinkstack_[a-z0-9_]+|nv_[a-z0-9_]+|up)\b")
PROMETHEUS_OWN = {"up"}  # made by Prometheus for every scrape target, not exported


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p.get("targets", [])]


def rule_exprs() -> list[str]:
    spec = yaml.safe_load(RULES.read_text())["spec"]
    return [rule["expr"] for group in spec["groups"] for rule in group["rules"]]


def exported(url: str) -> set[str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_the_dashboard_and_rules_name_only_metrics_that_exist(live_stack, triton):
    import tritonclient.grpc as triton_client

    target = live_stack.config.address(live_stack.config.aggregator_port)
    # A short real run: frames through TrackFrames, observations with events, a subscriber, stats.
    watch(
        str(paths.data_dir() / "video" / "eyeblink8_v8_windows.mp4"),
        target,
        "metrics-run",
        max_frames=30,
        progress=False,
    )

    with grpc.insecure_channel(target) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        stub.PublishEyeStateBatches(messages("metrics-obs", 1, timeline(BLINKS), per_message=50), timeout=20)
        collect(stub, aggregator_pb2.SubscribeBlinksRequest(stream_ids=["metrics-obs"], after_id="0"), 5)
        stub.GetStats(aggregator_pb2.GetStatsRequest(stream_id="metrics-obs", track_id=1), timeout=5)
    names: set[str] = set()
    for spec in (DETECTOR, EYESTATE, AGGREGATOR):
        names |= exported(f"http://127.0.0.1:{live_stack.config.metrics_port(spec)}/metrics")
    client = triton_client.InferenceServerClient(triton.grpc_url)
    request = triton_client.InferInput("images", [1, 1, 32, 32], "FP32")
    request.set_data_from_numpy(np.zeros((1, 1, 32, 32), np.float32))
    client.infer("eye_state", [request])
    names |= exported(f"http://127.0.0.1:{triton.metrics_port}/metrics")

    queried = {name for expr in dashboard_exprs() + rule_exprs() for name in METRIC.findall(expr)}
    missing = sorted(queried - names - PROMETHEUS_OWN)
    assert not missing, f"queried but not exported: {missing}"
    assert len(queried) >= 20  # the dashboard covers every service, Redis and Triton
    panel_titles = {p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]}
    assert {"RPC rate", "Errors by status code", "Latency p50 / p99", "Redis", "Subscribers"} <= panel_titles


def test_the_rules_pass_promtool(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("no promtool: `apt-get install prometheus` (.ci/run installs it)")
    plain = tmp_path / "rules.yaml"
    plain.write_text(yaml.safe_dump(yaml.safe_load(RULES.read_text())["spec"]))
    result = subprocess.run([promtool, "check", "rules", str(plain)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_the_monitoring_component_renders_onto_an_overlay(tmp_path):
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the kustomize component (kubectl kustomize)"
    overlay = os.path.relpath(REPO_ROOT / "deploy" / "k8s" / "overlays" / "cpu", tmp_path)
    component = os.path.relpath(COMPONENT, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        # As an overlay lists it: the overlay's namespace applies to the component's objects too.
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: blinkstack\n"
        f"resources: [{overlay}]\ncomponents: [{component}]\n"
    )
    rendered = subprocess.run([kubectl, "kustomize", str(tmp_path)], capture_output=True, text=True, check=True)
    objects = [o for o in yaml.safe_load_all(rendered.stdout) if o]
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    (rules,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    assert monitor["metadata"]["namespace"] == rules["metadata"]["namespace"] == "blinkstack"
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [o for o in objects if o["kind"] == "Service" and selector.items() <= o["metadata"]["labels"].items()]
    scraped = {s["metadata"]["name"] for s in services if "metrics" in {p["name"] for p in s["spec"]["ports"]}}
    assert {"detector", "eyestate", "aggregator"} <= scraped
