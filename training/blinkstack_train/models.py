"""The eye-state model family: one network shape, several widths, in one registry.

Each model maps [N, 1, 32, 32] standardised crops to one logit per crop (open = positive). The
inverted-residual blocks (MobileNetV2) keep parameters and multiply-adds low on small CPUs. Downsampling
early (32 -> 16 in the first stage, then 8 and 4) costs little accuracy on eyelid-sized structures and makes
training and inference about 3x cheaper than keeping 32x32 feature maps through the first stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    stem: int
    # (expansion, output channels, repeats, stride of the first block) per stage
    stages: tuple[tuple[int, int, int, int], ...]
    dropout: float = 0.1


MODEL_SPECS: dict[str, ModelSpec] = {
    "tiny": ModelSpec(stem=8, stages=((2, 12, 1, 2), (2, 24, 2, 2), (2, 40, 2, 2))),
    "small": ModelSpec(stem=12, stages=((2, 16, 1, 2), (3, 32, 2, 2), (3, 64, 2, 2), (3, 96, 1, 1))),
    "medium": ModelSpec(stem=16, stages=((2, 24, 1, 2), (4, 48, 2, 2), (4, 96, 3, 2), (4, 128, 1, 1))),
}
DEFAULT_MODEL = "small"


def conv_bn_relu(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.use_residual = stride == 1 and cin == cout
        self.body = nn.Sequential(
            conv_bn_relu(cin, hidden),
            conv_bn_relu(hidden, hidden, kernel=3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.use_residual else out


class EyeStateNet(nn.Module):
    name: str = ""  # the registry name (`build_model`), carried into checkpoints and export reports

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu(1, spec.stem, kernel=3)]
        cin = spec.stem
        for expansion, cout, repeats, stride in spec.stages:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, expansion, stride if i == 0 else 1))
                cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(spec.dropout), nn.Linear(cin, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 1, H, W] -> logits [N]."""
        return self.head(self.pool(self.features(x))).squeeze(1)


class ProbOpen(nn.Module):
    """The exported graph: logits -> sigmoid, so the served model answers P(open) directly."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(images))


def build_model(name: str) -> EyeStateNet:
    if name not in MODEL_SPECS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_SPECS)}")
    model = EyeStateNet(MODEL_SPECS[name])
    model.name = name  # the registry name travels with the model (checkpoints, export reports)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
