"""Test helpers for the toolkit and for users' own CI: real encoded videos made on the spot."""

from cookbook_data.testing.videos import (
    BROKEN_KINDS,
    ODD_KINDS,
    SyntheticVideo,
    VideoSet,
    make_video_set,
    set_mp4_rotation,
    write_video,
)

__all__ = [
    "BROKEN_KINDS",
    "ODD_KINDS",
    "SyntheticVideo",
    "VideoSet",
    "make_video_set",
    "set_mp4_rotation",
    "write_video",
]
