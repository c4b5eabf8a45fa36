import base64
import json
import os
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from cookbook_data.schemas import Prediction, VideoSample
from cookbook_eval.config import ReportConfig, VideoPhy2Config
from cookbook_eval.metrics import SUMMARY_FILE, VideoPhy2Summary, evaluate_videophy2, summarize_videophy2
from cookbook_eval.report import Run, load_summary, metric_rows, render_report, write_report

SKIP_BROWSER_ENV = "COOKBOOK_SKIP_BROWSER_TESTS"
HOSTILE = '<img src=x onerror="alert(1)">&'
"""A category name that would run script if it reached the page unescaped."""

PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const decoded = images.filter((image) => image.complete && image.naturalWidth > 0);
  document.body.setAttribute("data-images", String(images.length));
  document.body.setAttribute("data-loaded-images", String(decoded.length));
  document.body.setAttribute(
    "data-image-sizes",
    JSON.stringify(decoded.map((image) => [image.dataset.plot || "", image.naturalWidth, image.naturalHeight]))
  );
});
</script>"""
"""Appended to a copy of the report: after load, writes into <body> how many images the browser decoded."""


def write_run(folder: Path, seed: int, noise: int, categories: tuple[str, ...] = ("fluid", "solid", HOSTILE)) -> Path:
    """A labelled manifest, a critic's predictions (some unparseable) and their evaluation; returns the run folder."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    manifest, predictions = folder / "manifest.jsonl", folder / "predictions.jsonl"
    labels = rng.integers(1, 6, size=120)
    with manifest.open("w") as m, predictions.open("w") as p:
        for i, label in enumerate(labels):
            sample = VideoSample(
                id=f"clip-{i}",
                url=f"https://example.com/{i}.mp4",
                labels={"pc": int(label)},
                metadata={"category": categories[i % len(categories)]},
            )
            m.write(sample.model_dump_json() + "\n")
            guess = int(np.clip(label + rng.integers(-noise, noise + 1), 1, 5))
            answer = None if i % 17 == 0 else str(guess)
            p.write(
                Prediction(sample_id=sample.id, model="critic", raw_text="", answer=answer).model_dump_json() + "\n"
            )
    evaluate_videophy2(VideoPhy2Config(manifest=manifest, predictions=predictions, out=folder, bootstrap=200))
    return folder


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


class ImageCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.body: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag == "body":
            self.body = dict(attrs)


def parse(page: str) -> ImageCollector:
    collector = ImageCollector()
    collector.feed(page)
    return collector


def chromium() -> str:
    if os.environ.get(SKIP_BROWSER_ENV) == "1":
        pytest.skip(f"{SKIP_BROWSER_ENV}=1")
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail(
            "headless Chromium is needed to check that the report's plots decode: install Debian's chromium "
            f"(apt-get install -y chromium), or set {SKIP_BROWSER_ENV}=1 to skip this test"
        )
    return binary


def dump_dom(binary: str, page: Path, profile: Path) -> str:
    result = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_browser_decodes_every_plot_of_a_comparison_report(tmp_path: Path) -> None:
    binary = chromium()
    first = write_run(tmp_path / "good", seed=0, noise=1)
    second = write_run(tmp_path / "noisy", seed=1, noise=3)
    out = tmp_path / "site" / "report.html"
    files = write_report(ReportConfig(run=first, compare=second, out=out))
    page = out.read_text()

    images = parse(page).images
    plots = [image["data-plot"] for image in images]
    assert plots == ["confusion-good", "confusion-noisy", "histogram", "calibration", "per-category"]
    assert files.plots == len(plots)
    sizes = {}
    for image in images:
        source = image["src"] or ""
        assert source.startswith("data:image/png;base64,"), "plots must be embedded, not linked"
        sizes[image["data-plot"]] = png_size(base64.b64decode(source.split(",", 1)[1]))

    # A copy with the probe, plus one broken image to show that the probe tells decoded from broken.
    probe = tmp_path / "probe.html"
    broken = '<img data-plot="broken" src="data:image/png;base64,AAAA">'
    probe.write_text(page.replace("</body>", f"{broken}{PROBE}</body>"))
    body = parse(dump_dom(binary, probe, tmp_path / "profile")).body
    assert body.get("data-images") == str(len(plots) + 1), "the page did not finish loading"
    assert body.get("data-loaded-images") == str(len(plots))
    decoded = {name: (width, height) for name, width, height in json.loads(body["data-image-sizes"] or "[]")}
    assert decoded == sizes
    assert all(width > 100 and height > 100 for width, height in decoded.values())


def test_report_escapes_text_from_the_runs(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", seed=2, noise=1)
    out = tmp_path / "report.html"
    write_report(ReportConfig(run=run, out=out, title="<b>critic</b> & co"))
    page = out.read_text()
    assert HOSTILE not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in page
    assert "<b>critic</b>" not in page and "&lt;b&gt;critic&lt;/b&gt; &amp; co" in page
    assert "<script" not in page


def test_single_run_report_tables_and_json(tmp_path: Path) -> None:
    run = write_run(tmp_path / "only", seed=3, noise=1)
    summary = load_summary(run)
    files = write_report(ReportConfig(run=run / SUMMARY_FILE, out=tmp_path / "r" / "index.html"))
    assert files.json == tmp_path / "r" / "index.json"
    page = files.html.read_text()
    assert "Δ" not in page  # one run: no delta column
    assert [image["data-plot"] for image in parse(page).images] == [
        "confusion-only",
        "histogram",
        "calibration",
        "per-category",
    ]
    document = json.loads(files.json.read_text())
    assert [run["name"] for run in document["runs"]] == ["only"]
    rows = {row["key"]: row for row in document["metrics"]}
    assert summary.likert is not None
    assert rows["exact_accuracy"]["values"][0]["value"] == summary.likert.exact_accuracy.value
    assert rows["exact_accuracy"]["values"][0]["ci_low"] == summary.likert.exact_accuracy.ci_low
    assert rows["unparseable"]["values"][0]["value"] == summary.coverage.unparseable.count > 0
    assert "joint_accuracy" not in rows and "choice_accuracy" not in rows
    assert f"{summary.likert.pearson.value:.3f}" in page
    # Each unparseable id is listed in the coverage section.
    for sample_id in summary.coverage.unparseable.first_ids:
        assert f"<code>{sample_id}</code>" in page


def test_comparison_deltas_are_second_minus_first(tmp_path: Path) -> None:
    first, second = write_run(tmp_path / "a", seed=4, noise=1), write_run(tmp_path / "b", seed=5, noise=2)
    files = write_report(ReportConfig(run=first, compare=second, out=tmp_path / "cmp.html", names=["base", "new"]))
    document = json.loads(files.json.read_text())
    a, b = load_summary(first), load_summary(second)
    assert a.likert is not None and b.likert is not None
    rows = {row["key"]: row for row in document["metrics"]}
    assert rows["pearson"]["delta"] == pytest.approx(b.likert.pearson.value - a.likert.pearson.value)  # type: ignore[operator]
    assert rows["mean_absolute_error"]["delta"] == pytest.approx(
        b.likert.mean_absolute_error - a.likert.mean_absolute_error  # type: ignore[operator]
    )
    categories = {row["group"]: row for row in document["per_category"]}
    fluid_a = next(g for g in a.per_category if g.group == "fluid")
    fluid_b = next(g for g in b.per_category if g.group == "fluid")
    assert categories["fluid"]["delta"] == pytest.approx(fluid_b.accuracy - fluid_a.accuracy)  # type: ignore[operator]
    page = files.html.read_text()
    assert "Δ (new − base)" in page
    # A worse error is coloured as worse even though it went up.
    mae_row = re.search(r"<tr><td>mean absolute error</td>.*?</tr>", page)
    assert mae_row is not None
    assert ('class="worse"' if rows["mean_absolute_error"]["delta"] > 0 else 'class="better"') in mae_row.group(0)


def test_runs_from_folders_of_the_same_name_get_distinct_names(tmp_path: Path) -> None:
    first = write_run(tmp_path / "x" / "run", seed=4, noise=1)
    second = write_run(tmp_path / "y" / "run", seed=5, noise=2)
    files = write_report(ReportConfig(run=first / SUMMARY_FILE, compare=second, out=tmp_path / "cmp.html"))
    document = json.loads(files.json.read_text())
    assert [run["name"] for run in document["runs"]] == ["run (A)", "run (B)"]
    assert [run["path"] for run in document["runs"]] == [str(first / SUMMARY_FILE), str(second)]
    plots = [image["data-plot"] for image in parse(files.html.read_text()).images]
    assert len(plots) == len(set(plots)) and {"confusion-run (A)", "confusion-run (B)"} <= set(plots)


def test_two_runs_of_one_name_are_refused(tmp_path: Path) -> None:
    first, second = write_run(tmp_path / "a", seed=4, noise=1), write_run(tmp_path / "b", seed=5, noise=2)
    with pytest.raises(ValueError, match="both runs are named 'v1'"):
        ReportConfig(run=first, compare=second, out=tmp_path / "cmp.html", names=["v1", "v1"])
    summaries = [load_summary(first), load_summary(second)]
    with pytest.raises(ValueError, match="both runs are named 'v1'"):
        render_report([Run("v1", summary) for summary in summaries])
    assert not (tmp_path / "cmp.html").exists()


def test_multiple_choice_report_has_per_dataset_accuracy(tmp_path: Path) -> None:
    samples = [
        VideoSample(
            id=f"q{i}",
            url=f"https://e.com/{i}.mp4",
            labels={"answer": "ABCD"[i % 4]},
            metadata={"dataset": ["set-1", "set-2"][i % 2]},
        )
        for i in range(40)
    ]
    predictions = [
        Prediction(sample_id=f"q{i}", model="m", raw_text="", answer="ABCD"[i % 4] if i % 3 else "A") for i in range(40)
    ]
    config = VideoPhy2Config(
        manifest=tmp_path / "m.jsonl", predictions=tmp_path / "p.jsonl", out=tmp_path, task="multiple_choice"
    )
    summary = summarize_videophy2(samples, config, predictions=predictions)
    page = render_report([Run("mc", summary)])
    assert [image["data-plot"] for image in parse(page).images] == ["per-dataset"]
    assert '<table id="per-dataset">' in page
    rows = {row["key"]: row for row in metric_rows([Run("mc", summary)])}
    assert summary.multiple_choice is not None
    assert rows["choice_accuracy"]["values"][0]["value"] == summary.multiple_choice.accuracy.value
    assert "exact_accuracy" not in rows


def test_load_summary_names_the_file_it_cannot_use(tmp_path: Path) -> None:
    (tmp_path / SUMMARY_FILE).write_text('{"kind": "fid", "value": 3.2}\n')
    with pytest.raises(ValueError, match=r"summary\.json: not a VideoPhy-2 summary"):
        load_summary(tmp_path)
    with pytest.raises(ValueError, match=r"nothing[/\\]summary\.json: cannot read"):
        load_summary(tmp_path / "nothing" / SUMMARY_FILE)
    assert isinstance(load_summary(write_run(tmp_path / "ok", seed=6, noise=1)), VideoPhy2Summary)
