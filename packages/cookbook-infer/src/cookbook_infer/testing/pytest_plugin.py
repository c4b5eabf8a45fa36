"""pytest fixtures shipped with cookbook-infer (registered through the ``pytest11`` entry point)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cookbook_infer.testing.tiny import Arch, make_tiny_model


class TinyCheckpoints:
    """Builds each tiny checkpoint on first use and hands out the same folder afterwards."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._built: dict[Arch, Path] = {}

    def __call__(self, arch: Arch) -> Path:
        if arch not in self._built:
            self._built[arch] = make_tiny_model(arch, self._root / f"tiny-{arch}")
        return self._built[arch]


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> TinyCheckpoints:
    """``tiny_checkpoints("reason1" | "reason2")`` -> folder of a tiny checkpoint, built once a session."""
    return TinyCheckpoints(tmp_path_factory.mktemp("checkpoints"))
