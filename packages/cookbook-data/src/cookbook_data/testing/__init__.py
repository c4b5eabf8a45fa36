"""Test helpers for the toolkit and for users' own CI: real encoded videos made on the spot."""

from cookbook_data.testing.videos import BROKEN_KINDS, SyntheticVideo, VideoSet, make_video_set, write_video

__all__ = ["BROKEN_KINDS", "SyntheticVideo", "VideoSet", "make_video_set", "write_video"]
