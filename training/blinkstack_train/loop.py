"""The pieces of the training loop: one epoch, prediction, the weight EMA, and checkpoints that resume exactly
(model, EMA, optimiser, schedule, RNG, history)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from blinkstack.common.preprocess import normalize
from blinkstack.tools.progress import progress


def class_weights(labels: np.ndarray) -> np.ndarray:
    """Per-class weights n / (2 n_class), indexed by class id: both classes weigh the same in the loss."""
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    return (len(labels) / (2.0 * np.maximum(counts, 1.0))).astype(np.float32)


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def to_input(crops: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(normalize(crops)).unsqueeze(1)


@torch.no_grad()
def predict(model: torch.nn.Module, crops: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    model.eval()
    logits = [model(to_input(crops[i : i + batch_size])) for i in range(0, len(crops), batch_size)]
    return torch.sigmoid(torch.cat(logits)).numpy()


class WeightEMA:
    """Exponential moving average of a model's parameters and buffers.

    The decay ramps up as min(decay, (1 + t) / (10 + t)): a fixed 0.998 from step 0 would keep most of the
    random initialisation in the average for the first epochs.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        self.decay, self.steps = decay, 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for averaged, current in zip(self.module.state_dict().values(), model.state_dict().values(), strict=True):
            if averaged.dtype.is_floating_point:
                averaged.lerp_(current, 1.0 - decay)
            else:
                averaged.copy_(current)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.steps = state["steps"]


@dataclass
class Trainer:
    """What an optimisation step changes: the model, its EMA, the optimiser and the learning-rate schedule."""

    model: torch.nn.Module
    ema: WeightEMA | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler

    @classmethod
    def create(
        cls, model: torch.nn.Module, lr: float, weight_decay: float, ema_decay: float, warmup: int, total: int
    ) -> Trainer:
        """AdamW (no decay on biases and norms), warm-up then cosine to 1 % of `lr`, EMA unless `ema_decay` 0."""
        no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
        decay = [p for n, p in model.named_parameters() if p.ndim > 1]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, lr=lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, total))
        return cls(model, WeightEMA(model, ema_decay) if ema_decay else None, optimizer, scheduler)

    @property
    def evaluated(self) -> torch.nn.Module:
        """The weights that are validated, checkpointed as best and exported: the EMA's when there is one."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])


def train_one_epoch(
    trainer: Trainer,
    batches: list[np.ndarray],
    crops: np.ndarray,
    labels: np.ndarray,
    weight_per_class: np.ndarray,
    augment: Callable[[np.ndarray], np.ndarray],
    desc: str,
) -> float:
    """One pass over `batches` (row indices); the mean class-weighted BCE loss."""
    trainer.model.train()
    total_loss, seen = 0.0, 0
    bar = progress(batches, desc=desc, unit="batch")
    for idx in bar:
        x = to_input(augment(crops[idx]))
        y = torch.from_numpy(labels[idx]).float()
        w = torch.from_numpy(weight_per_class[labels[idx]])
        loss = F.binary_cross_entropy_with_logits(trainer.model(x), y, weight=w)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()
        trainer.scheduler.step()
        if trainer.ema is not None:
            trainer.ema.update(trainer.model)
        total_loss += loss.item() * len(idx)
        seen += len(idx)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", lr=f"{trainer.lr:.2e}")
    return total_loss / seen


def save_checkpoint(path: Path, trainer: Trainer, rng: np.random.Generator, progress_state: dict) -> None:
    """Everything `load_checkpoint` needs to continue exactly: weights, optimiser, schedule, both RNGs and
    `progress_state` (epoch, history, best, model name)."""
    torch.save(
        {
            "model": trainer.model.state_dict(),
            "ema": trainer.ema.state_dict() if trainer.ema is not None else None,
            "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict(),
            "numpy_rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            **progress_state,
        },
        path,
    )


def load_checkpoint(path: Path, trainer: Trainer, rng: np.random.Generator) -> dict:
    """Restore what `save_checkpoint` wrote into `trainer` and `rng`; returns the saved progress state."""
    state = torch.load(path, weights_only=False)
    trainer.model.load_state_dict(state["model"])
    if trainer.ema is not None and state.get("ema") is not None:
        trainer.ema.load_state_dict(state["ema"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    return state
