import json
import os
import subprocess
import sys
from pathlib import Path

from cookbook_data.schemas import VideoSample


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cookbook_data", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        check=False,
    )


def test_help_lists_the_commands() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for command in ("schema", "check-records", "make-test-videos", "version"):
        assert command in result.stdout


def test_schema_prints_the_json_schema_of_a_record() -> None:
    result = cli("schema", "video-sample")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema == VideoSample.model_json_schema()
    assert schema["additionalProperties"] is False


def test_check_records_counts_valid_lines(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_text("".join(VideoSample(id=f"v{i}", path=f"/v{i}.mp4").model_dump_json() + "\n" for i in range(3)))
    result = cli("check-records", str(path), "--kind", "video-sample")
    assert result.returncode == 0, result.stderr
    assert "3 valid video-sample records" in result.stdout


def test_a_bad_record_gives_a_one_line_error_naming_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_text('{"id": "v0", "path": "/v0.mp4"}\n{"id": "v1", "path": "/v1.mp4", "lables": {}}\n')
    result = cli("check-records", str(path), "--kind", "video-sample")
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]
    assert first == f"error: RecordFileError: {path}:2: lables: Extra inputs are not permitted"
    assert "Traceback" not in result.stderr

    debug = cli("check-records", str(path), "--kind", "video-sample", env={"COOKBOOK_DEBUG": "1"})
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr


def test_make_test_videos_writes_good_and_broken_files(tmp_path: Path) -> None:
    result = cli("make-test-videos", str(tmp_path / "videos"))
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (tmp_path / "videos").iterdir())
    assert "h264_24fps.mp4" in written
    assert "truncated.mp4" in written
    assert len(result.stdout.splitlines()) == len(written)
