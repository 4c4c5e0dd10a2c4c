"""The service contract and the configuration table: one declaration, literal names, a README that matches."""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

from blinkstack.aggregator.engine import EngineConfig
from blinkstack.aggregator.options import ENGINE_OPTIONS
from blinkstack.common.config import env_table
from blinkstack.services import SERVICES
from blinkstack.v1 import aggregator_pb2, detector_pb2, eyestate_pb2
from tests.helpers import REPO_ROOT

ENV_NAME = re.compile(r"BLINKSTACK_[A-Z0-9_]+")


def test_each_spec_names_its_protobuf_service_and_distinct_ports():
    declared = {
        s.full_name
        for module in (detector_pb2, eyestate_pb2, aggregator_pb2)
        for s in module.DESCRIPTOR.services_by_name.values()
    }
    assert {spec.grpc_service for spec in SERVICES.values()} == declared
    ports = [p for spec in SERVICES.values() for p in (spec.port, spec.metrics_port)]
    assert len(set(ports)) == len(ports)


def test_every_service_flag_has_a_literal_env_name_that_uses_the_specs_names():
    for spec in SERVICES.values():
        parser = argparse.ArgumentParser()
        spec.options().add_arguments(parser)
        table = {flag: env for env, flag, _, _ in env_table(parser)}
        assert (table["--host"], table["--port"], table["--metrics-port"]) == (
            spec.host_env,
            spec.port_env,
            spec.metrics_port_env,
        )
        assert all(ENV_NAME.fullmatch(env) for env in table.values())


def _another(value: object) -> object:
    """A different value of the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 + 0.125
    if isinstance(value, tuple):
        return (*value, 99.0)
    return f"{value}-other" if value else "other"


# Flags that only decide whether a service may start, so they leave no trace in its options.
START_UP_CHECKS = {"allow_plaintext_tokens"}  # lets --tokens-file start without TLS (test_security_rules)


def test_every_flag_reaches_the_options_its_server_is_built_from():
    """The servers take the options dataclass only: a flag that `from_args` drops would be a setting that does
    nothing. Changing any one flag changes the options (or is refused at start-up, like a missing TLS file)."""
    for spec in SERVICES.values():
        parser = argparse.ArgumentParser()
        spec.options().add_arguments(parser)
        defaults = parser.parse_args([])
        built = spec.options().from_args(defaults)
        assert dataclasses.is_dataclass(built) and built == spec.options().from_args(parser.parse_args([]))
        for action in parser._actions:
            if "env" not in vars(action) or action.dest in START_UP_CHECKS:
                continue
            changed = argparse.Namespace(**vars(defaults))
            setattr(changed, action.dest, _another(getattr(defaults, action.dest)))
            try:
                other = spec.options().from_args(changed)
            except (ValueError, OSError):
                continue  # read and refused: it reaches the options
            assert other != built, f"{spec.name}: {action.option_strings[-1]} changes nothing in the options"


def test_no_server_module_reads_parsed_flags():
    for spec in SERVICES.values():
        source = (REPO_ROOT / "services" / Path(*spec.package.split("."))).joinpath("server.py").read_text()
        assert "argparse" not in source, f"{spec.name}/server.py reads flags: it should take its options"


def test_every_engine_setting_is_a_flag():
    # closure_alerts_s is a list of seconds: its own flag, --closure-alerts-s
    assert [name for name, _, _ in ENGINE_OPTIONS] + ["closure_alerts_s"] == list(EngineConfig.__dataclass_fields__)


def test_no_env_name_is_assembled_at_run_time():
    sources = (REPO_ROOT / "services" / "blinkstack").rglob("*.py")
    assembled = [str(p) for p in sources if re.search(r"""f["']BLINKSTACK_\{""", p.read_text())]
    assert not assembled, f"env names built with f-strings (not greppable): {assembled}"


def test_serve_imports_serving_code_only():
    """`blinkstack serve` must start in the image's environment: no client tool module may be imported."""
    probe = (
        "import sys; from blinkstack import serve; import argparse; p = argparse.ArgumentParser();"
        "serve.add_serve_parser(p.add_subparsers());"
        "from blinkstack.services import SERVICES; [s.server() for s in SERVICES.values()];"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'tqdm', 'matplotlib', 'torch', 'pandas'}"
        " or m.startswith(('blinkstack.tools', 'blinkstack.local', 'blinkstack_train')));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"serving imports tool modules: {result.stdout}{result.stderr}"


def test_default_paths_are_found_in_the_checkout_blinkstack_was_installed_from_when_run_elsewhere(
    tmp_path, monkeypatch
):
    """CI installs the service image's set with `pip install .` and the test set with `pip install -e .`: both
    record this checkout, so from any other directory the relative defaults still resolve into it."""
    from blinkstack.common import paths

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BLINKSTACK_MODEL_REPOSITORY", raising=False)
    assert paths.installed_from() == REPO_ROOT.resolve()
    assert paths.model_repository() == (REPO_ROOT / "model_repository").resolve()
    assert (tmp_path / "mine").mkdir() is None and paths.located("mine") == paths.Path("mine")  # present here: kept
    assert paths.located("absent") == paths.Path("absent")  # nowhere: as given, for the error that names it
