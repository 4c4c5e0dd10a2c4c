"""Where blinkstack finds its files: from flags or environment variables, else relative to the working directory.

Nothing is found relative to a source file: an installed package (the service image, a non-editable install)
has no checkout around it. The defaults fit a checkout's root, where the README's commands run; elsewhere set
the variable (the image sets BLINKSTACK_MODEL_REPOSITORY) and get a clear error naming it when a path is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL_REPOSITORY = "model_repository"
DEFAULT_DATA_DIR = "../shared/data"


def model_repository() -> Path:
    """The Triton model repository that the embedded backends read and the tools export into."""
    return Path(os.environ.get("BLINKSTACK_MODEL_REPOSITORY", DEFAULT_MODEL_REPOSITORY))


def data_dir() -> Path:
    """The shared data (eye crops, videos); CI and the checkout have it at ../shared/data."""
    return Path(os.environ.get("BLINKSTACK_DATA_DIR", DEFAULT_DATA_DIR))


def require(path: Path, what: str, how: str) -> Path:
    """`path` if it exists, else a ValueError that says what is missing and how to point at it."""
    if not path.exists():
        raise ValueError(f"{what} not found at {path.resolve()}: {how}")
    return path
