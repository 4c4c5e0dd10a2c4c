"""What is generated stays in step with its source: the gRPC stubs with the .proto files, docs/configuration.md's
table with the flags. (Repository checks that need the dev and tools extras, hence not `unit`.)"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from blinkstack.tools import config_table
from blinkstack.tools.frames_table import COLUMNS
from tests.helpers import REPO_ROOT

ENV_NAME = re.compile(r"BLINKSTACK_[A-Z0-9_]+")
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


def test_the_configuration_doc_carries_the_generated_table_and_every_name_the_code_reads():
    text = (REPO_ROOT / "docs" / "configuration.md").read_text()
    assert config_table.START in text and config_table.END in text, "docs/configuration.md has no generated table"
    table = text[text.index(config_table.START) + len(config_table.START) : text.index(config_table.END)]
    assert table == config_table.markdown(), (
        "the configuration table is stale: `python -m blinkstack.tools.config_table --update docs/configuration.md`"
    )
    listed = {row[0] for row in config_table.rows()}
    read_by_code = {
        name
        for path in (REPO_ROOT / "services" / "blinkstack").rglob("*.py")
        for name in ENV_NAME.findall(path.read_text())
    }
    assert read_by_code <= listed, f"not in the table: {sorted(read_by_code - listed)}"


def test_readme_documents_every_frames_csv_column():
    text = (REPO_ROOT / "README.md").read_text()
    documented = re.findall(r"^\| `(\w+)` \| ", text[text.index("### Per-frame export") :], re.M)
    assert documented[: len(COLUMNS)] == [name for name, _ in COLUMNS]
