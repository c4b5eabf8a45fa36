"""pytest fixtures shipped with cookbook-data (registered through the ``pytest11`` entry point).

Any project that installs cookbook-data gets them in its own tests.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import suppress

import pytest

from cookbook_data.testing.http import VideoServer, serve_videos
from cookbook_data.testing.videos import VideoSet, make_video_set

# Under `uv run pytest`, Ray would start the test cluster's workers with `uv run` in an uploaded copy of the
# project, which lacks this environment's packages; they use this interpreter instead. Ray reads the setting
# when it is imported, so it is set here, as pytest loads this plugin.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.fixture(scope="session")
def synthetic_videos(tmp_path_factory: pytest.TempPathFactory) -> VideoSet:
    """The default set of encoded test videos (good ones with ground truth, and broken files), made once."""
    return make_video_set(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="session")
def video_server(synthetic_videos: VideoSet) -> Iterator[VideoServer]:
    """A real HTTP server on 127.0.0.1 serving ``synthetic_videos`` (see :class:`VideoServer` for routes)."""
    with serve_videos(synthetic_videos) as server:
        yield server


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """A local Ray cluster for the whole session (2 CPUs, no dashboard), started on first use and stopped at
    the end; yields its address, for processes that join it. Skips where Ray (the ``ray`` extra) is missing."""
    ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'cookbook-data[ray]'")
    if ray.is_initialized():
        yield ray.get_runtime_context().gcs_address
        return
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        if "ray.serve" in sys.modules:
            with suppress(Exception):
                sys.modules["ray.serve"].shutdown()
        ray.shutdown()
