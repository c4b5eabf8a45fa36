import json
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cookbook_data.testing import VideoSet
from cookbook_eval.cli import app
from cookbook_eval.metrics import VideoPhy2Summary


def test_version_names_the_package_and_the_stack() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cookbook_eval", "version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"cookbook-eval {metadata.version('cookbook-eval')}"
    assert any(line.strip().startswith("pydantic 2.") for line in lines[1:])


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def run_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A manifest of 8 labelled clips, predictions for 7 of them (one unparseable) and scores for all."""
    labels = [1, 2, 3, 4, 5, 5, 4, 2]
    answers = ["1", "3", "3", "4", None, "5", "2"]
    manifest = write_jsonl(
        tmp_path / "manifest.jsonl",
        [
            {
                "id": f"c{i}",
                "url": f"https://e.com/{i}.mp4",
                "labels": {"pc": y, "sa": 4},
                "metadata": {"category": "x"},
            }
            for i, y in enumerate(labels)
        ],
    )
    predictions = write_jsonl(
        tmp_path / "predictions.jsonl",
        [{"sample_id": f"c{i}", "model": "critic", "raw_text": "", "answer": a} for i, a in enumerate(answers)],
    )
    scores = write_jsonl(
        tmp_path / "scores.jsonl",
        [{"sample_id": f"c{i}", "score": float(y), "score_kind": "physics_likert"} for i, y in enumerate(labels)],
    )
    return manifest, predictions, scores


def test_videophy2_prints_key_metrics_and_writes_the_summary(
    tmp_path: Path, run_files: tuple[Path, Path, Path]
) -> None:
    manifest, predictions, _ = run_files
    out = tmp_path / "eval"
    args = ["videophy2", "--manifest", str(manifest), "--predictions", str(predictions), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    summary = VideoPhy2Summary.model_validate_json((out / "summary.json").read_text())
    assert summary.likert is not None
    # c0, c2, c3 and c5 right of 7 evaluated; c4 unparseable, c7 missing.
    assert summary.likert.exact_accuracy.value == pytest.approx(4 / 7)
    assert summary.coverage.missing.first_ids == ["c7"]
    assert summary.coverage.unparseable.first_ids == ["c4"]
    assert re.search(r"exact accuracy \(pc\)\s+│\s+0\.571 \[", result.output)
    assert re.search(r"missing predictions\s+│\s+1\b", result.output)
    assert re.search(r"unparseable \(counted wrong\)\s+│\s+1\b", result.output)
    assert f"wrote {out / 'summary.json'}" in result.output
    resolved = json.loads((out / "config.resolved.json").read_text())["config"]
    assert resolved["bootstrap"] == 50 and resolved["predictions"] == str(predictions)


def test_videophy2_json_prints_the_summary(tmp_path: Path, run_files: tuple[Path, Path, Path]) -> None:
    manifest, _, scores = run_files
    out = tmp_path / "eval"
    args = ["videophy2", "--manifest", str(manifest), "--scores", str(scores), "--out", str(out), "--json"]
    result = CliRunner().invoke(app, [*args, "--seed", "3"])
    assert result.exit_code == 0, result.output
    printed = VideoPhy2Summary.model_validate_json(result.output)
    assert printed == VideoPhy2Summary.model_validate_json((out / "summary.json").read_text())
    assert printed.likert is not None and printed.likert.exact_accuracy.value == 1.0
    assert printed.likert.score_kind == "physics_likert"
    assert printed.seed == 3


def test_videophy2_settings_precedence(tmp_path: Path, run_files: tuple[Path, Path, Path]) -> None:
    manifest, predictions, _ = run_files
    toml = tmp_path / "eval.toml"
    toml.write_text(
        f'manifest = "{manifest}"\npredictions = "{predictions}"\nout = "{tmp_path / "from-toml"}"\n'
        "threshold = 3\nbootstrap = 10\nseed = 1\n"
    )
    result = CliRunner().invoke(
        app, ["videophy2", "--config", str(toml), "--set", "seed=2", "--set", "bootstrap=20", "--bootstrap", "0"]
    )
    assert result.exit_code == 0, result.output
    resolved = json.loads((tmp_path / "from-toml" / "config.resolved.json").read_text())["config"]
    assert (resolved["threshold"], resolved["seed"], resolved["bootstrap"]) == (3, 2, 0)
    summary = VideoPhy2Summary.model_validate_json((tmp_path / "from-toml" / "summary.json").read_text())
    assert summary.likert is not None and summary.likert.binary.threshold == 3
    assert summary.likert.pearson.ci_low is None


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cookbook_eval", *args], capture_output=True, text=True, check=False)


def test_videophy2_errors_name_the_file_and_line(tmp_path: Path, run_files: tuple[Path, Path, Path]) -> None:
    manifest, predictions, scores = run_files
    with predictions.open("a") as handle:
        handle.write('{"sample_id": "c9", "model": "critic", "raw_text": "", "answer": 4}\n')
    result = run_cli(
        "videophy2", "--manifest", str(manifest), "--predictions", str(predictions), "--out", str(tmp_path / "x")
    )
    assert result.returncode == 1
    assert f"{predictions}:8: answer: Input should be a valid string" in result.stderr
    assert "Traceback" not in result.stderr

    both = run_cli(
        "videophy2",
        "--manifest",
        str(manifest),
        "--predictions",
        str(predictions),
        "--scores",
        str(scores),
        "--out",
        "y",
    )
    assert both.returncode == 1
    assert "give either `predictions` or `scores`" in both.stderr
    assert not (tmp_path / "x").exists()


def test_videophy2_refuses_predictions_of_another_task_in_one_line(
    tmp_path: Path, run_files: tuple[Path, Path, Path]
) -> None:
    manifest, predictions, _ = run_files
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    write_jsonl(predictions, [{**row, "task": "rule:videophy2_rule@1"} for row in rows])
    out = tmp_path / "x"
    result = run_cli("videophy2", "--manifest", str(manifest), "--predictions", str(predictions), "--out", str(out))
    assert result.returncode == 1
    assert f"{predictions}: holds predictions of task rule (7), but --task critic --label-field pc" in result.stderr
    assert len(result.stderr.splitlines()) == 2  # the cause, and where to find its traceback
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_videophy2_refuses_scores_of_no_kind_compared_with_the_label_in_one_line(
    tmp_path: Path, run_files: tuple[Path, Path, Path]
) -> None:
    manifest, _, scores = run_files  # physics_likert scores only, as `cookbook-reward score --scorer likert` writes
    out = tmp_path / "x"
    result = run_cli(
        "videophy2", "--manifest", str(manifest), "--scores", str(scores), "--label-field", "sa", "--out", str(out)
    )
    assert result.returncode == 1
    assert (
        f"no sample evaluated: {scores}: none of its 8 score records is of kind instruction_likert (or "
        "videophy2_joint), which label `sa` is compared with: it holds physics_likert (8); --label-field pc reads "
        "physics_likert"
    ) in result.stderr
    assert len(result.stderr.splitlines()) == 2 and "Traceback" not in result.stderr
    assert not out.exists()


def test_videophy2_refuses_predictions_of_another_manifest_in_one_line(
    tmp_path: Path, run_files: tuple[Path, Path, Path]
) -> None:
    manifest, predictions, _ = run_files
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    write_jsonl(predictions, [{**row, "sample_id": f"other-{row['sample_id']}"} for row in rows])
    out = tmp_path / "x"
    result = run_cli("videophy2", "--manifest", str(manifest), "--predictions", str(predictions), "--out", str(out))
    assert result.returncode == 1
    assert (
        f"no sample evaluated: {predictions}: none of the 7 samples it answers is a labelled sample of {manifest}: "
        "7 not in it (first ids: other-c0, other-c1, other-c2, other-c3, other-c4, other-c5, other-c6;"
    ) in result.stderr
    assert len(result.stderr.splitlines()) == 2 and "Traceback" not in result.stderr
    assert not out.exists()


def test_videophy2_table_shows_score_records_of_other_kinds(tmp_path: Path, run_files: tuple[Path, Path, Path]) -> None:
    manifest, _, scores = run_files
    args = ["videophy2", "--manifest", str(manifest), "--scores", str(scores), "--bootstrap", "0", "--out"]
    alone = CliRunner().invoke(app, [*args, str(tmp_path / "alone")])
    assert alone.exit_code == 0, alone.output
    assert "other kinds" not in alone.output
    with scores.open("a") as handle:
        for sample_id in ("c0", "c1"):
            handle.write(json.dumps({"sample_id": sample_id, "score": 1.0, "score_kind": "reward_model_yes_no"}) + "\n")
    mixed = CliRunner().invoke(app, [*args, str(tmp_path / "mixed")])
    assert mixed.exit_code == 0, mixed.output
    assert re.search(r"score records of other kinds \(not used\)\s+│\s+2\b", mixed.output)


def test_report_command_compares_two_runs(tmp_path: Path, run_files: tuple[Path, Path, Path]) -> None:
    manifest, predictions, scores = run_files
    runner = CliRunner()
    for name, source in (("a", ["--predictions", str(predictions)]), ("b", ["--scores", str(scores)])):
        result = runner.invoke(app, ["videophy2", "--manifest", str(manifest), *source, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    out = tmp_path / "report" / "index.html"
    args = ["report", str(tmp_path / "a"), "--compare", str(tmp_path / "b" / "summary.json"), "--out", str(out)]
    result = runner.invoke(app, [*args, "--name", "parsed", "--name", "scored"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (" in result.output
    page = out.read_text()
    assert "Δ (scored − parsed)" in page
    assert page.count('src="data:image/png;base64,') >= 4
    document = json.loads(out.with_suffix(".json").read_text())
    assert [run["name"] for run in document["runs"]] == ["parsed", "scored"]
    exact = next(row for row in document["metrics"] if row["key"] == "exact_accuracy")
    assert exact["delta"] == pytest.approx(1.0 - 4 / 7)


@pytest.mark.parametrize("paths", [["--out", "r.json"], ["--out", "r.html", "--json-out", "./r.html"]])
def test_report_refuses_to_write_its_json_over_its_html(
    tmp_path: Path, run_files: tuple[Path, Path, Path], paths: list[str]
) -> None:
    manifest, predictions, _ = run_files
    args = ["videophy2", "--manifest", str(manifest), "--predictions", str(predictions), "--out", str(tmp_path / "a")]
    assert CliRunner().invoke(app, args).exit_code == 0
    result = subprocess.run(
        [sys.executable, "-m", "cookbook_eval", "report", str(tmp_path / "a"), *paths],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "would both be written to r." in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("r.*"))


def test_report_refuses_two_runs_given_one_name(tmp_path: Path, run_files: tuple[Path, Path, Path]) -> None:
    manifest, predictions, scores = run_files
    for name, source in (("a", ["--predictions", str(predictions)]), ("b", ["--scores", str(scores)])):
        args = ["videophy2", "--manifest", str(manifest), *source, "--out", str(tmp_path / name)]
        assert CliRunner().invoke(app, args).exit_code == 0
    result = subprocess.run(
        [sys.executable, "-m", "cookbook_eval", "report", "a", "--compare", "b", "--name", "v1", "--name", "v1"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "both runs are named 'v1'" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("report.*"))


@pytest.mark.parametrize("command", ["fid", "fvd", "sampson", "videophy2", "report"])
def test_every_command_explains_itself(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_fid_on_random_weights_says_it_is_not_comparable(synthetic_videos: VideoSet, tmp_path: Path) -> None:
    real, generated = tmp_path / "real", tmp_path / "generated"
    for folder, names in ((real, ("h264_24fps", "mpeg4_8fps")), (generated, ("h264_30fps_long", "mpeg4_10fps"))):
        folder.mkdir()
        for name in names:
            shutil.copy(synthetic_videos.good[name].path, folder / f"{name}.mp4")
    args = ["fid", "--real", str(real), "--generated", str(generated), "--out", str(tmp_path / "fid")]
    args += ["--weights", "random", "--frames-per-video", "2", "--image-size", "96", "--shrinkage", "ledoit-wolf"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # --json prints the result alone
    assert document["comparable"] is False
    assert document["value"] > 0
    assert (tmp_path / "fid" / "fid.json").exists()


def test_fid_with_missing_weights_fails_in_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    videos = str(tmp_path / "v")
    command = [sys.executable, "-m", "cookbook_eval", "fid", "--real", videos, "--generated", videos]
    command += ["--out", str(tmp_path / "o"), "--weights", "/nowhere/inception.pth"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "/nowhere/inception.pth" in result.stderr
    assert "Traceback" not in result.stderr
