"""Fixtures of cookbook-data's own tests."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest

from cookbook_data.jobs import Job, run_job
from cookbook_data.schemas import Prediction
from cookbook_data.testing import SyntheticVideo, write_video

HoldOutput = Callable[[Path], AbstractContextManager[BaseProcess]]
"""``with hold_output(out) as holder:``: another process is in the middle of a job writing ``out``."""

WAIT_S = 60.0


def _until(exists: Path) -> bool:
    """Wait for a file to appear. Files, not multiprocessing events, signal between the processes: a process
    killed while it held an event's internal lock would leave the other waiting forever."""
    deadline = time.monotonic() + WAIT_S
    while not exists.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _wait_in_batch(started: Path, release: Path, batch: list[int]) -> list[Prediction]:
    started.touch()
    _until(release)
    return [Prediction(sample_id=f"s{i}", model="holder", raw_text=str(i)) for i in batch]


def _run_until_released(out: Path, started: Path, release: Path) -> None:
    job: Job[int, Prediction] = Job(
        stage="hold",
        process=partial(_wait_in_batch, started, release),
        item_id=lambda i: f"s{i}",
        out=out,
        record_type=Prediction,
        errors=out.with_name(f"{out.name}.hold-errors.jsonl"),
    )
    run_job(job, [0], progress=False)


@pytest.fixture
def hold_output(tmp_path_factory: pytest.TempPathFactory) -> HoldOutput:
    """A real second process running a job on an output, stopped inside its first batch (so in the middle of its
    run) until the ``with`` block ends; then it finishes its run."""

    @contextmanager
    def holding(out: Path) -> Iterator[BaseProcess]:
        signals = tmp_path_factory.mktemp("holder")
        started, release = signals / "started", signals / "release"
        holder = multiprocessing.get_context("fork").Process(target=_run_until_released, args=(out, started, release))
        holder.start()
        try:
            assert _until(started), "the holding run never reached its first batch"
            yield holder
        finally:
            release.touch()
            holder.join(WAIT_S)

    return holding


@pytest.fixture(scope="session")
def faststart_videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticVideo, Path]:
    """An MP4 with its index before its frames ("faststart"), and a copy of it cut to 60% of its bytes: the copy
    opens and its header still announces every frame, of which the last ~40% are missing."""
    root = tmp_path_factory.mktemp("faststart")
    whole = SyntheticVideo(root / "whole.mp4", fps=24, num_frames=96, width=160, height=120, codec="h264")
    data = write_video(whole, faststart=True).read_bytes()
    cut = root / "cut.mp4"
    cut.write_bytes(data[: len(data) * 3 // 5])
    return whole, cut
