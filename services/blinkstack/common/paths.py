"""Where blinkstack finds its files: from flags or environment variables, else in the working directory, else in
the checkout the package was installed from.

The defaults are relative paths that fit a checkout's root, where the README's commands run. Run anywhere else,
a relative default that is absent there is looked up in the directory pip installed blinkstack from (PEP 610's
`direct_url.json`, written by `pip install -e .` and `pip install .`), so `blinkstack up` works from any
directory. An image installed from a wheel has no checkout: it sets BLINKSTACK_MODEL_REPOSITORY, and an absent
path gets a clear error naming the variable.
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

DEFAULT_MODEL_REPOSITORY = "model_repository"
DEFAULT_DATA_DIR = "../shared/data"


@cache
def installed_from() -> Path | None:
    """The local directory blinkstack was pip-installed from, if it was and it is still there."""
    # Every record, not the first found: a build's stray `blinkstack.egg-info` in the working directory has none.
    for record in metadata.distributions(name="blinkstack"):
        url = urlparse(json.loads(record.read_text("direct_url.json") or "{}").get("url", ""))
        if url.scheme == "file" and Path(unquote(url.path)).is_dir():
            return Path(unquote(url.path))
    return None


def located(path: str | Path) -> Path:
    """`path` as given, unless it is relative, absent here and present in the checkout blinkstack came from."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    source = installed_from()
    if source is not None and (source / path).exists():
        return (source / path).resolve()
    return path


def model_repository() -> Path:
    """The Triton model repository that the embedded backends read and the tools export into."""
    return located(os.environ.get("BLINKSTACK_MODEL_REPOSITORY", DEFAULT_MODEL_REPOSITORY))


def data_dir() -> Path:
    """The shared data (eye crops, videos); CI and the checkout have it at ../shared/data."""
    return located(os.environ.get("BLINKSTACK_DATA_DIR", DEFAULT_DATA_DIR))


def require(path: Path, what: str, how: str) -> Path:
    """`path` if it exists, else a ValueError that says what is missing and how to point at it."""
    if not path.exists():
        raise ValueError(f"{what} not found at {path.resolve()}: {how}")
    return path
