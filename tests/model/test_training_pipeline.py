"""A tiny real training run: a few hundred real crops, one epoch, resume, export through the parity gate."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from blinkstack.common.model_repository import onnx_io_specs, read_config, resolve_model_file, tensor_specs
from blinkstack.common.onnx_runtime import create_session, run_prob_open
from blinkstack.common.preprocess import INPUT_SHAPE
from blinkstack_train.export import ParityError, export, load_checkpoint, parity_check
from blinkstack_train.models import build_model
from blinkstack_train.train import TrainConfig, train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_run")
    train(TrainConfig(model="tiny", out_dir=out, epochs=1, limit=300, batch_size=64, threads=2))
    return out


def test_training_writes_checkpoints_logs_and_plots(run_dir):
    for name in (
        "best.pt",
        "last.pt",
        "history.json",
        "metrics.csv",
        "train_summary.json",
        "curves.png",
        "confusion_val.png",
        "roc_val.png",
        "augmentations.png",
    ):
        assert (run_dir / name).stat().st_size > 0, name
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1]
    assert np.isfinite(history[0]["train_loss"])


def test_resume_continues_from_the_last_epoch(run_dir):
    first = json.loads((run_dir / "history.json").read_text())
    train(TrainConfig(model="tiny", out_dir=run_dir, epochs=2, limit=300, batch_size=64, threads=2, resume=True))
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0] == first[0]
    assert torch.load(run_dir / "last.pt", weights_only=False)["epoch"] == 2


def test_refit_trains_on_train_and_validation_people_and_keeps_the_last_epoch(tmp_path):
    summary = train(
        TrainConfig(model="tiny", out_dir=tmp_path, epochs=2, limit=300, batch_size=64, threads=2, refit=True)
    )
    assert summary["validation_seen_in_training"] is True
    assert summary["best"]["epoch"] == 2  # no selection on (seen) validation data
    assert summary["train_rows"] == 300  # the limit applies to the combined train+val rows


def test_export_passes_parity_and_installs_a_servable_model(run_dir, tmp_path):
    repository = tmp_path / "repo"
    result = export(run_dir / "best.pt", tmp_path / "model.onnx", repository=repository, version=3, parity_crops=256)
    assert result["parity"]["max_abs_diff"] <= 1e-4
    model_file, version = resolve_model_file(repository / "eye_state")
    assert version == 3
    proto = onnx.load(str(model_file))
    assert not any(node.op_type == "BatchNormalization" for node in proto.graph.node)
    session = create_session(model_file)
    for batch in (1, 7):
        probs = run_prob_open(
            session, np.random.default_rng(batch).standard_normal((batch, *INPUT_SHAPE)).astype(np.float32)
        )
        assert probs.shape == (batch,) and ((probs >= 0) & (probs <= 1)).all()
    inputs, outputs = onnx_io_specs(model_file)
    config = read_config(repository / "eye_state")
    assert tensor_specs(config, "input") == inputs and tensor_specs(config, "output") == outputs


def test_parity_gate_rejects_a_model_that_differs(run_dir, tmp_path):
    export(run_dir / "best.pt", tmp_path / "model.onnx", parity_crops=64)
    images = np.random.default_rng(0).standard_normal((64, *INPUT_SHAPE)).astype(np.float32)
    assert parity_check(load_checkpoint(run_dir / "best.pt"), tmp_path / "model.onnx", images) <= 1e-4
    torch.manual_seed(123)
    other = build_model("tiny").eval()
    with pytest.raises(ParityError, match="max \\|diff\\|"):
        parity_check(other, tmp_path / "model.onnx", images)
