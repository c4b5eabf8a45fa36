"""pytest fixtures shipped with cookbook-data (registered through the ``pytest11`` entry point).

Any project that installs cookbook-data gets them in its own tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cookbook_data.testing.http import VideoServer, serve_videos
from cookbook_data.testing.videos import VideoSet, make_video_set


@pytest.fixture(scope="session")
def synthetic_videos(tmp_path_factory: pytest.TempPathFactory) -> VideoSet:
    """The default set of encoded test videos (good ones with ground truth, and broken files), made once."""
    return make_video_set(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="session")
def video_server(synthetic_videos: VideoSet) -> Iterator[VideoServer]:
    """A real HTTP server on 127.0.0.1 serving ``synthetic_videos`` (see :class:`VideoServer` for routes)."""
    with serve_videos(synthetic_videos) as server:
        yield server
