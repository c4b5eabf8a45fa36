import hashlib
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from cookbook_data.download import (
    DownloadError,
    UndecodableVideoError,
    VideoCache,
    cache_name,
    download,
    url_digest,
)
from cookbook_data.testing.http import SLOW_S, VideoServer
from cookbook_data.testing.videos import VideoSet
from cookbook_data.video import probe


@pytest.fixture
def server(video_server: VideoServer) -> VideoServer:
    return video_server


def names(folder: Path) -> list[str]:
    """File names in a folder, sorted (temporary files included: none may be left behind)."""
    return sorted(path.name for path in folder.iterdir())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_download_is_cached_under_its_url_hash_and_reused(
    server: VideoServer, synthetic_videos: VideoSet, tmp_path: Path
) -> None:
    url = server.url("/videos/h264_24fps.mp4", "reuse")
    cache = VideoCache(tmp_path / "cache")
    path = cache.fetch(url)
    assert path == tmp_path / "cache" / f"{hashlib.sha256(url.encode()).hexdigest()}.mp4"
    assert path.read_bytes() == synthetic_videos.good["h264_24fps"].path.read_bytes()
    assert probe(path).num_frames == 48
    assert server.hits_for(url) == 1
    assert cache.fetch(url) == path
    assert VideoCache(tmp_path / "cache").fetch(url) == path  # a later run reuses it too
    assert server.hits_for(url) == 1
    assert names(tmp_path / "cache") == [path.name]


def test_the_same_url_fetched_from_many_threads_is_downloaded_once(server: VideoServer, tmp_path: Path) -> None:
    url = server.url("/videos/mpeg4_10fps.mp4", "threads")
    cache = VideoCache(tmp_path / "cache")
    paths: list[Path] = []
    threads = [threading.Thread(target=lambda: paths.append(cache.fetch(url))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(paths) == 8 and len(set(paths)) == 1
    assert server.hits_for(url) == 1
    assert len(names(tmp_path / "cache")) == 1


def test_the_cache_name_depends_on_the_url_alone() -> None:
    url = "https://example.com/gen/video_0001.mp4"
    assert cache_name(url) == cache_name(url) == url_digest(url) + ".mp4"
    assert cache_name(url) != cache_name("https://example.com/gen/video_0002.mp4")
    assert cache_name("https://example.com/a/clip.MOV").endswith(".mov")
    assert cache_name("https://example.com/stream?id=3").endswith(".mp4")
    assert url_digest(url) == hashlib.sha256(url.encode()).hexdigest()


def test_an_http_error_names_the_url_and_leaves_no_file(server: VideoServer, tmp_path: Path) -> None:
    url = server.url("/videos/nope.mp4", "404")
    with pytest.raises(DownloadError, match=r"HTTP 404") as raised:
        VideoCache(tmp_path / "cache").fetch(url)
    assert url in str(raised.value)
    assert names(tmp_path / "cache") == []


@pytest.mark.parametrize("kind", ["not_a_video", "truncated", "audio_only"])
def test_a_download_that_is_not_a_video_is_deleted_and_reported(server: VideoServer, tmp_path: Path, kind: str) -> None:
    url = server.url(f"/broken/{kind}.mp4", f"broken-{kind}")
    with pytest.raises(UndecodableVideoError, match="not a decodable video") as raised:
        VideoCache(tmp_path / "cache").fetch(url)
    assert url in str(raised.value)
    assert server.hits_for(url) == 1
    assert names(tmp_path / "cache") == []


def test_an_empty_body_is_an_error(server: VideoServer, tmp_path: Path) -> None:
    url = server.url("/broken/empty.mp4", "empty")
    with pytest.raises(DownloadError, match="empty response body"):
        VideoCache(tmp_path / "cache").fetch(url)
    assert names(tmp_path / "cache") == []


def test_an_interrupted_download_leaves_no_final_file(
    server: VideoServer, synthetic_videos: VideoSet, tmp_path: Path
) -> None:
    url = server.url("/cut/h264_30fps_long.mp4", "cut")
    cache = VideoCache(tmp_path / "cache")
    with pytest.raises(DownloadError, match=r"connection closed after \d+ of \d+ bytes") as raised:
        cache.fetch(url)
    assert url in str(raised.value)
    assert names(tmp_path / "cache") == []

    # An existing file is only ever replaced by a whole download.
    dest = tmp_path / "cache" / "kept.mp4"
    good = synthetic_videos.good["mpeg4_8fps"].path.read_bytes()
    dest.write_bytes(good)
    with pytest.raises(DownloadError):
        download(url, dest)
    assert dest.read_bytes() == good
    assert names(tmp_path / "cache") == ["kept.mp4"]


def test_a_damaged_cached_file_is_downloaded_again(
    server: VideoServer, synthetic_videos: VideoSet, tmp_path: Path
) -> None:
    url = server.url("/videos/h264_portrait_15fps.mp4", "damaged")
    cache = VideoCache(tmp_path / "cache")
    cache.path_for(url).parent.mkdir(parents=True)
    cache.path_for(url).write_bytes(b"not a video any more")
    path = cache.fetch(url)
    assert server.hits_for(url) == 1
    assert sha(path.read_bytes()) == sha(synthetic_videos.good["h264_portrait_15fps"].path.read_bytes())


def test_a_server_that_does_not_answer_times_out_naming_the_url(server: VideoServer, tmp_path: Path) -> None:
    url = server.url("/slow/videos/mpeg4_8fps.mp4", "slow")
    started = time.perf_counter()
    with pytest.raises(DownloadError, match="timed out") as raised:
        VideoCache(tmp_path / "cache", timeout_s=0.3).fetch(url)
    assert time.perf_counter() - started < SLOW_S
    assert url in str(raised.value)
    assert names(tmp_path / "cache") == []


@pytest.mark.parametrize("url", ["file:///etc/hostname", "ftp://example.com/a.mp4", "videos/a.mp4", ""])
def test_only_http_urls_are_fetched(tmp_path: Path, url: str) -> None:
    with pytest.raises(DownloadError, match="not an http"):
        VideoCache(tmp_path / "cache").fetch(url)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o007, 0o660)])
def test_cached_videos_get_the_mode_of_any_new_file(server: VideoServer, tmp_path: Path, umask: int, mode: int) -> None:
    """Not mkstemp's 0o600: a cache shared by several users or containers must be readable by them."""
    before = os.umask(umask)
    try:
        path = VideoCache(tmp_path / "cache").fetch(server.url("/videos/h264_24fps.mp4", f"mode{umask}"))
    finally:
        os.umask(before)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert names(tmp_path / "cache") == [path.name]
