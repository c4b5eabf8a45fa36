import logging
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cookbook_data.records import JsonlWriter, RecordFileError, done_ids, read_records, write_records
from cookbook_data.schemas import ItemError, Prediction, VideoSample


def prediction(i: int) -> Prediction:
    return Prediction(sample_id=f"s{i}", model="m", raw_text=f"<answer>{i % 5 + 1}</answer>", answer=str(i % 5 + 1))


def test_written_records_read_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "out" / "predictions.jsonl"
    with JsonlWriter(path, Prediction) as writer:
        assert writer.write_all(prediction(i) for i in range(5)) == 5
    assert list(read_records(path, Prediction)) == [prediction(i) for i in range(5)]
    assert path.read_text().count("\n") == 5


def test_reopening_appends_instead_of_truncating(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    with JsonlWriter(path, Prediction) as writer:
        writer.write(prediction(0))
    with JsonlWriter(path, Prediction) as writer:
        writer.write(prediction(1))
    assert [r.sample_id for r in read_records(path, Prediction)] == ["s0", "s1"]


def test_writer_refuses_the_wrong_record_type_and_use_after_close(tmp_path: Path) -> None:
    writer = JsonlWriter(tmp_path / "p.jsonl", Prediction)
    with pytest.raises(TypeError, match="expected Prediction, got ItemError"):
        writer.write(ItemError(sample_id="a", stage="s", error_type="E", message="m"))  # type: ignore[arg-type]
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write(prediction(0))


def test_a_bad_line_is_reported_with_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    lines = [
        prediction(0).model_dump_json(),
        '{"sample_id": "s1", "model": "m"}',
        prediction(2).model_dump_json(),
    ]
    path.write_text("\n".join(lines) + "\n")
    records = read_records(path, Prediction)
    assert next(records).sample_id == "s0"
    with pytest.raises(RecordFileError, match=rf"^{path}:2: raw_text: Field required$"):
        next(records)


def test_invalid_json_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(prediction(0).model_dump_json() + "\n\n{not json\n")
    with pytest.raises(RecordFileError, match=rf"^{path}:3: Invalid JSON"):
        list(read_records(path, Prediction))


def test_torn_last_line_is_skipped_by_readers_and_set_aside_by_writers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "p.jsonl"
    with JsonlWriter(path, Prediction) as writer:
        writer.write_all(prediction(i) for i in range(3))
    torn = prediction(3).model_dump_json()[:25]
    with path.open("a") as handle:
        handle.write(torn)

    with caplog.at_level(logging.WARNING):
        assert [r.sample_id for r in read_records(path, Prediction)] == ["s0", "s1", "s2"]
    assert "torn final line" in caplog.text
    assert done_ids(path) == {"s0", "s1", "s2"}

    with JsonlWriter(path, Prediction) as writer:
        writer.write(prediction(3))
    assert [r.sample_id for r in read_records(path, Prediction)] == ["s0", "s1", "s2", "s3"]
    assert (tmp_path / "p.jsonl.torn").read_text() == torn + "\n"


def test_a_last_line_torn_inside_a_character_is_skipped_like_any_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    write_records(path, Prediction, [prediction(0)])
    whole = Prediction(sample_id="s1", model="m", raw_text="物理 " * 20).model_dump_json().encode()
    cut = whole.index("理".encode()) + 1  # inside the character's three bytes
    with path.open("ab") as handle:
        handle.write(whole[:cut])

    assert [r.sample_id for r in read_records(path, Prediction)] == ["s0"]
    assert done_ids(path) == {"s0"}


def test_a_complete_line_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(prediction(0).model_dump_json().encode() + b"\n" + b'{"sample_id": "\xff"}\n')
    with pytest.raises(RecordFileError, match=r"p.jsonl:2: not UTF-8 text"):
        list(read_records(path, Prediction))
    with pytest.raises(RecordFileError, match=r"p.jsonl:2: not UTF-8 text"):
        done_ids(path)


def test_done_ids_of_a_missing_file_is_empty_and_names_bad_lines(tmp_path: Path) -> None:
    assert done_ids(tmp_path / "absent.jsonl") == set()
    path = tmp_path / "p.jsonl"
    path.write_text('{"sample_id": "a"}\n{"id": "b"}\n')
    with pytest.raises(RecordFileError, match=r"p.jsonl:2: no `sample_id`"):
        done_ids(path)
    assert done_ids(path.with_name("q.jsonl")) == set()


WRITER_LOOP = textwrap.dedent(
    """
    import sys
    from cookbook_data.records import JsonlWriter
    from cookbook_data.schemas import Prediction

    with JsonlWriter(sys.argv[1], Prediction) as writer:
        i = 0
        while True:
            writer.write(Prediction(sample_id=f"s{i}", model="m", raw_text="x" * 5000))
            if i == 50:
                print("ready", flush=True)
            i += 1
    """
)


def test_a_killed_writer_leaves_a_file_a_rerun_can_resume(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    child = subprocess.Popen([sys.executable, "-c", WRITER_LOOP, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait()

    written = done_ids(path)
    assert len(written) > 50
    assert written == {f"s{i}" for i in range(len(written))}

    with JsonlWriter(path, Prediction) as writer:
        for i in range(len(written) + 5):
            if f"s{i}" not in written:
                writer.write(Prediction(sample_id=f"s{i}", model="m", raw_text="again"))
    records = list(read_records(path, Prediction))
    assert [r.sample_id for r in records] == [f"s{i}" for i in range(len(written) + 5)]


def test_write_records_replaces_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "kept.jsonl"
    first = [VideoSample(id=f"v{i}", path=f"/v{i}.mp4") for i in range(3)]
    assert write_records(path, VideoSample, first) == 3
    assert write_records(path, VideoSample, first[:1]) == 1
    assert [s.id for s in read_records(path, VideoSample)] == ["v0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.jsonl"]


def test_a_byte_order_mark_opening_a_file_is_not_part_of_its_first_record(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    lines = [VideoSample(id=f"v{i}", path=f"/v{i}.mp4").model_dump_json() for i in range(2)]
    path.write_text("\ufeff" + "".join(line + "\n" for line in lines), encoding="utf-8")  # as Windows editors save
    assert [s.id for s in read_records(path, VideoSample)] == ["v0", "v1"]
    assert done_ids(path, key="id") == {"v0", "v1"}
