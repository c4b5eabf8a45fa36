"""pytest fixtures shipped with cookbook-data (registered through the ``pytest11`` entry point).

Any project that installs cookbook-data gets them in its own tests.
"""

from __future__ import annotations

import pytest

from cookbook_data.testing.videos import VideoSet, make_video_set


@pytest.fixture(scope="session")
def synthetic_videos(tmp_path_factory: pytest.TempPathFactory) -> VideoSet:
    """The default set of encoded test videos (good ones with ground truth, and broken files), made once."""
    return make_video_set(tmp_path_factory.mktemp("videos"))
