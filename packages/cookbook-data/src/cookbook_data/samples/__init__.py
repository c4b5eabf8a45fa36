"""Two small encoded videos shipped with the package (a square moving over a grey background, h264 at
24 fps and mpeg4 at 10 fps): the default input of the quick-start commands."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def sample_videos() -> list[Path]:
    """Paths of the shipped sample videos."""
    folder = resources.files(__name__)
    return sorted(Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".mp4"))
