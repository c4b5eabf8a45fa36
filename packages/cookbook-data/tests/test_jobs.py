import errno
import fcntl
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest

from cookbook_data.jobs import RESOLVED_CONFIG, Job, OutputBusyError, lock_path, run_job
from cookbook_data.records import read_records
from cookbook_data.schemas import ItemError, Prediction, Strict

HoldOutput = Callable[[Path], AbstractContextManager[BaseProcess]]
"""The ``hold_output`` fixture (conftest.py)."""


class Config(Strict):
    threshold: int = 3


def job(tmp_path: Path, process, batch_size: int = 1, workers: int = 1) -> Job[int, Prediction]:  # type: ignore[no-untyped-def]
    return Job(
        stage="square",
        process=process,
        item_id=lambda i: f"s{i}",
        out=tmp_path / "out" / "records.jsonl",
        record_type=Prediction,
        errors=tmp_path / "out" / "errors.jsonl",
        batch_size=batch_size,
        workers=workers,
    )


def square(batch: list[int]) -> list[Prediction]:
    for item in batch:
        if item % 7 == 3:
            raise ValueError(f"item {item} is bad")
    return [Prediction(sample_id=f"s{i}", model="m", raw_text=str(i * i)) for i in batch]


@pytest.mark.parametrize(("batch_size", "workers"), [(1, 1), (4, 1), (3, 2)])
def test_every_item_ends_as_a_record_or_an_error(tmp_path: Path, batch_size: int, workers: int) -> None:
    the_job = job(tmp_path, square, batch_size, workers)
    report = run_job(the_job, list(range(20)), config=Config(), progress=False)
    records = {r.sample_id: r.raw_text for r in read_records(the_job.out, Prediction)}
    assert list(records) == [f"s{i}" for i in range(20) if i % 7 != 3]  # input order, whatever the workers
    errors = {e.sample_id: e for e in read_records(the_job.errors, ItemError)}
    bad = {f"s{i}" for i in range(20) if i % 7 == 3}
    assert set(errors) == bad
    assert records == {f"s{i}": str(i * i) for i in range(20) if f"s{i}" not in bad}
    assert all(e.stage == "square" and e.error_type == "ValueError" for e in errors.values())
    assert errors["s3"].message == "item 3 is bad"
    assert (report.total, report.succeeded, report.failed, report.skipped) == (20, 17, 3, 0)
    assert report.failures_by_type == {"ValueError": 3}
    assert "17 done, 3 failed" in report.summary()


def test_a_rerun_skips_done_items_and_retries_failed_ones(tmp_path: Path) -> None:
    the_job = job(tmp_path, square)
    run_job(the_job, list(range(10)), progress=False)
    calls: list[int] = []

    def fixed(batch: list[int]) -> list[Prediction]:
        calls.extend(batch)
        return [Prediction(sample_id=f"s{i}", model="m", raw_text=str(i * i)) for i in batch]

    report = run_job(job(tmp_path, fixed), list(range(12)), progress=False)
    assert calls == [3, 10, 11]
    assert (report.skipped, report.succeeded, report.failed) == (9, 3, 0)
    ids = [r.sample_id for r in read_records(the_job.out, Prediction)]
    assert sorted(ids) == sorted(f"s{i}" for i in range(12))
    assert len(ids) == len(set(ids))


def test_each_item_keeps_only_the_errors_of_its_latest_attempt(tmp_path: Path) -> None:
    the_job = job(tmp_path, square)
    run_job(the_job, [1, 3, 1, 10], progress=False)
    run_job(the_job, [1, 3, 1, 10], progress=False)  # s3 fails again, s1 is repeated again
    errors = [(e.sample_id, e.error_type) for e in read_records(the_job.errors, ItemError)]
    assert sorted(errors) == [("s1", "DuplicateId"), ("s10", "ValueError"), ("s3", "ValueError")]

    the_job.errors.write_text(the_job.errors.read_text() + "not a record\n")  # what it cannot read, it keeps

    def fixed(batch: list[int]) -> list[Prediction]:
        return [Prediction(sample_id=f"s{i}", model="m", raw_text=str(i * i)) for i in batch]

    report = run_job(job(tmp_path, fixed), [1, 3, 10], progress=False)
    assert (report.skipped, report.succeeded, report.failed) == (1, 2, 0)
    assert the_job.errors.read_text().splitlines()[-1] == "not a record"
    assert [json.loads(line)["sample_id"] for line in the_job.errors.read_text().splitlines()[:-1]] == ["s1"]
    assert not list(the_job.errors.parent.glob(".*partial"))


def test_duplicate_ids_are_reported_not_dropped_silently(tmp_path: Path) -> None:
    the_job = job(tmp_path, square)
    report = run_job(the_job, [1, 2, 1, 2, 4], progress=False)
    errors = list(read_records(the_job.errors, ItemError))
    assert sorted(e.sample_id for e in errors) == ["s1", "s2"]
    assert {e.error_type for e in errors} == {"DuplicateId"}
    assert report.succeeded == 3
    assert report.failed == 2


def test_a_repeated_id_does_not_erase_the_final_failure_of_its_first_copy(tmp_path: Path) -> None:
    the_job = job(tmp_path, square)
    the_job.retry_failed = False  # as validation: a broken file stays broken, and is skipped on rerun
    for _ in range(3):
        run_job(the_job, [3, 4, 3], progress=False)
    errors = sorted((e.sample_id, e.error_type) for e in read_records(the_job.errors, ItemError))
    assert errors == [("s3", "DuplicateId"), ("s3", "ValueError")]


def test_an_item_that_succeeded_in_a_crashed_run_loses_its_old_error_on_the_next(tmp_path: Path) -> None:
    run_job(job(tmp_path, square), [3, 4], progress=False)  # s3 fails

    def fixed_then_dies(batch: list[int]) -> list[Prediction]:
        if 5 in batch:
            raise KeyboardInterrupt
        return [Prediction(sample_id=f"s{i}", model="m", raw_text=str(i * i)) for i in batch]

    with pytest.raises(KeyboardInterrupt):  # s3 succeeds, then the run dies before it completes
        run_job(job(tmp_path, fixed_then_dies), [3, 5], progress=False)
    run_job(job(tmp_path, square), [3, 4, 6], progress=False)  # s3 is skipped as done

    the_job = job(tmp_path, square)
    assert {r.sample_id for r in read_records(the_job.out, Prediction)} == {"s3", "s4", "s6"}
    assert list(read_records(the_job.errors, ItemError)) == []


def test_a_wrong_number_of_records_is_an_error_per_item(tmp_path: Path) -> None:
    the_job = job(tmp_path, lambda batch: [], batch_size=2)
    report = run_job(the_job, [1, 2], progress=False)
    assert report.failed == 2
    assert "0 records for a batch of 1 items" in next(iter(read_records(the_job.errors, ItemError))).message


def test_a_crash_keeps_what_was_written_and_the_rerun_completes(tmp_path: Path) -> None:
    def dies_at_five(batch: list[int]) -> list[Prediction]:
        if 5 in batch:
            raise KeyboardInterrupt
        return square(batch)

    with pytest.raises(KeyboardInterrupt):
        run_job(job(tmp_path, dies_at_five), list(range(10)), progress=False)
    written = {r.sample_id for r in read_records(tmp_path / "out" / "records.jsonl", Prediction)}
    assert written == {"s0", "s1", "s2", "s4"}

    report = run_job(job(tmp_path, square), list(range(10)), progress=False)
    ids = [r.sample_id for r in read_records(tmp_path / "out" / "records.jsonl", Prediction)]
    assert sorted(ids) == sorted(f"s{i}" for i in range(10) if i != 3)
    assert report.skipped == len(written)


def test_batches_run_in_parallel_on_workers(tmp_path: Path) -> None:
    barrier = threading.Barrier(2, timeout=10)

    def meet(batch: list[int]) -> list[Prediction]:
        barrier.wait()  # only passes when two batches run at the same time
        return square(batch)

    report = run_job(job(tmp_path, meet, batch_size=1, workers=2), [0, 1], progress=False)
    assert report.succeeded == 2


def test_the_resolved_config_is_written_next_to_the_output(tmp_path: Path) -> None:
    run_job(job(tmp_path, square), [0], config=Config(threshold=5), progress=False)
    resolved = json.loads((tmp_path / "out" / RESOLVED_CONFIG).read_text())
    assert resolved["config"] == {"threshold": 5}
    assert "cookbook-data" in resolved["versions"]


def test_a_resolved_config_with_other_settings_is_kept_not_overwritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_job(job(tmp_path, square), [0], config=Config(threshold=5), progress=False)
    run_job(job(tmp_path, square), [0, 1], config=Config(threshold=5), progress=False)  # same settings
    folder = tmp_path / "out"
    assert sorted(p.name for p in folder.glob("config.resolved*")) == [RESOLVED_CONFIG]

    with caplog.at_level(logging.WARNING):
        run_job(job(tmp_path, square), [0, 1, 2], config=Config(threshold=7), progress=False)
    [kept] = [p for p in folder.glob("config.resolved.*.json")]
    assert json.loads(kept.read_text())["config"] == {"threshold": 5}  # what s0 and s1 were made with
    assert json.loads((folder / RESOLVED_CONFIG).read_text())["config"] == {"threshold": 7}
    assert f"kept as {kept.name}" in caplog.text


def test_item_failures_carry_a_reason_and_details(tmp_path: Path) -> None:
    from cookbook_data.jobs import ItemFailure

    def picky(batch: list[int]) -> list[Prediction]:
        if batch[0] == 2:
            raise ItemFailure("too_short", "s2 lasts 0.1 s", {"line": 3})
        return square(batch)

    the_job = job(tmp_path, picky)
    run_job(the_job, [1, 2], progress=False)
    [error] = read_records(the_job.errors, ItemError)
    assert (error.error_type, error.message, error.details) == ("too_short", "s2 lasts 0.1 s", {"line": 3})


def test_text_utf8_cannot_hold_fails_its_item_not_the_job(tmp_path: Path) -> None:
    from cookbook_data.jobs import ItemFailure

    def lone_surrogates(batch: list[int]) -> list[Prediction]:
        if batch[0] == 2:  # a failure quoting its input, which holds the same text
            raise ItemFailure("invalid_record", "s2: bad \ud800 row", {"row": "bad \ud800 row"})
        text = "bad \ud800 text" if batch[0] == 1 else "fine"  # as json.loads gives a "\\ud800" escape
        return [Prediction(sample_id=f"s{batch[0]}", model="m", raw_text=text)]

    the_job = job(tmp_path, lone_surrogates)
    report = run_job(the_job, [0, 1, 2, 3], progress=False)

    assert (report.succeeded, report.failed) == (2, 2)
    assert [record.sample_id for record in read_records(the_job.out, Prediction)] == ["s0", "s3"]
    errors = {error.sample_id: error for error in read_records(the_job.errors, ItemError)}
    assert errors["s1"].error_type == "unwritable_record"
    assert errors["s1"].message.startswith("s1: its record cannot be written: ")
    assert (errors["s2"].message, errors["s2"].details) == ("s2: bad \\ud800 row", {})  # escaped, row left out
    assert run_job(the_job, [0, 1, 2, 3], progress=False).skipped == 2  # both files read back


def test_final_failures_are_not_retried_when_the_job_says_so(tmp_path: Path) -> None:
    the_job = job(tmp_path, square)
    the_job.retry_failed = False
    run_job(the_job, list(range(5)), progress=False)
    report = run_job(the_job, list(range(5)), progress=False)
    assert (report.skipped, report.succeeded, report.failed) == (5, 0, 0)
    assert len(list(read_records(the_job.errors, ItemError))) == 1


def test_records_the_rerun_asks_more_of_are_made_again_and_replaced(tmp_path: Path) -> None:
    def draft(batch: list[int]) -> list[Prediction]:
        return [Prediction(sample_id=f"s{i}", model="draft", raw_text=str(i)) for i in batch]

    run_job(job(tmp_path, draft), list(range(4)), progress=False)
    calls: list[int] = []

    def final_then_dies_at_2(batch: list[int]) -> list[Prediction]:
        if 2 in batch:
            raise KeyboardInterrupt
        calls.extend(batch)
        return [Prediction(sample_id=f"s{i}", model="final", raw_text=str(i * i)) for i in batch]

    redoing = job(tmp_path, final_then_dies_at_2)
    redoing.redo = lambda record: record["model"] == "draft"
    with pytest.raises(KeyboardInterrupt):  # s0 and s1 are made again, then the run dies
        run_job(redoing, [0, 1, 2], progress=False)
    assert calls == [0, 1]

    def final_but_a_draft_for_2(batch: list[int]) -> list[Prediction]:
        return draft(batch) if batch == [2] else final_then_dies_at_2(batch)

    redoing.process = final_but_a_draft_for_2
    report = run_job(redoing, list(range(4)), progress=False)
    assert (report.skipped, report.succeeded) == (2, 2)  # s0 and s1 were made before the crash
    assert calls == [0, 1, 3]
    records = [(r.sample_id, r.model) for r in read_records(redoing.out, Prediction)]
    assert sorted(records) == [("s0", "final"), ("s1", "final"), ("s2", "draft"), ("s3", "final")]
    assert not list(redoing.out.parent.glob(".*partial"))


def test_a_second_run_on_an_output_another_process_is_writing_is_refused_at_once(
    tmp_path: Path, hold_output: HoldOutput
) -> None:
    calls: list[int] = []

    def record(batch: list[int]) -> list[Prediction]:
        calls.extend(batch)
        return square(batch)

    second = job(tmp_path, record)
    with hold_output(second.out) as holder:  # stopped in its first batch until the block ends
        with pytest.raises(OutputBusyError) as refused:
            run_job(second, [0, 1, 2], config=Config(threshold=9), progress=False)
        assert str(refused.value) == (
            f"{second.out}: another run (pid {holder.pid} on {socket.gethostname()}) holds records.jsonl.lock and "
            "is writing this output; wait for it to end or write to another output"
        )
        assert calls == []
        assert not (second.out.parent / RESOLVED_CONFIG).exists()  # the refused run wrote nothing
    assert holder.exitcode == 0
    report = run_job(second, [0, 1, 2], progress=False)  # the holder ended: its lock is released
    assert (report.skipped, report.succeeded) == (1, 2)
    assert [(r.sample_id, r.model) for r in read_records(second.out, Prediction)] == [
        ("s0", "holder"),
        ("s1", "m"),
        ("s2", "m"),
    ]


def test_a_run_that_dies_holding_the_output_does_not_block_the_next(tmp_path: Path, hold_output: HoldOutput) -> None:
    the_job = job(tmp_path, square)
    with hold_output(the_job.out) as holder:
        holder.kill()
        holder.join(60)
    report = run_job(the_job, [0, 1], progress=False)
    assert (report.succeeded, report.skipped) == (2, 0)
    assert lock_path(the_job.out).read_text() == f"pid {os.getpid()} on {socket.gethostname()}\n"


@pytest.mark.parametrize("link", ["file", "folder"])
def test_an_output_reached_through_a_symlink_meets_the_same_lock(
    tmp_path: Path, hold_output: HoldOutput, link: str
) -> None:
    the_job = job(tmp_path, square)
    the_job.out.parent.mkdir(parents=True, exist_ok=True)
    if link == "file":
        the_job.out.touch()
        (tmp_path / "linked.jsonl").symlink_to(the_job.out)
        other = tmp_path / "linked.jsonl"
    else:
        (tmp_path / "linked").symlink_to(the_job.out.parent, target_is_directory=True)
        other = tmp_path / "linked" / the_job.out.name
    with hold_output(other), pytest.raises(OutputBusyError):
        run_job(the_job, [0, 1], progress=False)


def test_runs_on_different_outputs_in_one_folder_do_not_block_each_other(
    tmp_path: Path, hold_output: HoldOutput
) -> None:
    the_job = job(tmp_path, square)
    with hold_output(the_job.out.with_name("other.jsonl")):
        report = run_job(the_job, [0, 1], progress=False)
    assert report.succeeded == 2


def test_a_filesystem_without_locks_runs_unlocked_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)  # as on Lustre mounted without flock
    the_job = job(tmp_path, square)
    with caplog.at_level(logging.WARNING, logger="cookbook_data.jobs"):
        report = run_job(the_job, [0, 1], progress=False)
    assert report.succeeded == 2
    assert f"{the_job.out}: this filesystem has no file locks" in caplog.text
