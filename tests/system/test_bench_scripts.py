"""Every benchmark script still imports against the package (they run by hand, so nothing else would notice).
They need the tools and local extras, hence not `unit`, which also runs against the service image."""

from __future__ import annotations

import importlib.util

import pytest

from tests.helpers import REPO_ROOT

SCRIPTS = sorted((REPO_ROOT / "bench").glob("bench_*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_a_benchmark_script_imports(script):
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # runs the imports and definitions; main() is behind `__name__` guards
    assert callable(module.main)
