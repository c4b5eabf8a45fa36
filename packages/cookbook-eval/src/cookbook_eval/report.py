"""Self-contained HTML reports of VideoPhy-2 evaluations, alone or two side by side.

The page holds its tables, its styles and its plots (PNG, base64 in ``<img>`` tags), so it can be mailed or
attached to a pull request as one file. Every piece of text that comes from a run (ids, model names,
categories, paths) is HTML-escaped. A JSON file next to it holds the same metric table for machines.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from cookbook_data.schemas import describe_validation_error
from cookbook_eval.config import ReportConfig
from cookbook_eval.metrics import SUMMARY_FILE, Estimate, GroupAccuracy, VideoPhy2Summary

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["Plot", "ReportFiles", "Run", "load_summary", "metric_rows", "render_report", "write_report"]

COLORS = ("#4878d0", "#ee854a", "#6acc64")
"""Colours of the first run, the second run, and the labels."""


@dataclass(frozen=True)
class Run:
    """One evaluation shown in a report."""

    name: str
    summary: VideoPhy2Summary
    path: Path | None = None


@dataclass(frozen=True)
class Plot:
    """A rendered plot: its id (the ``data-plot`` attribute), caption and PNG bytes."""

    key: str
    caption: str
    png: bytes


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote."""

    html: Path
    json: Path
    plots: int


def load_summary(path: Path) -> VideoPhy2Summary:
    """The summary in ``path``: a summary.json, or a run folder holding one."""
    file = path / SUMMARY_FILE if path.is_dir() else path
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"{file}: cannot read the summary ({error.strerror or error})") from None
    try:
        return VideoPhy2Summary.model_validate_json(text)
    except ValidationError as error:
        raise ValueError(f"{file}: not a VideoPhy-2 summary: {describe_validation_error(error)}") from None


# ---------------------------------------------------------------------------------------------------------
# The metric table


@dataclass(frozen=True)
class _Metric:
    key: str
    label: str
    path: str
    """Dotted attribute path into the summary."""
    integer: bool = False
    better: int = 1
    """+1 when a higher value is better, -1 when lower is, 0 when neither (deltas are coloured by it)."""

    def read(self, summary: VideoPhy2Summary) -> float | Estimate | None:
        value: Any = summary
        for part in self.path.split("."):
            value = getattr(value, part, None)
            if value is None:
                return None
        return value if isinstance(value, Estimate) else float(value)


_METRICS = (
    _Metric("evaluated", "evaluated samples", "coverage.evaluated", integer=True, better=0),
    _Metric("missing", "missing predictions", "coverage.missing.count", integer=True, better=-1),
    _Metric("not_asked", "not asked (no input)", "coverage.not_asked.count", integer=True, better=-1),
    _Metric("unparseable", "unparseable predictions", "coverage.unparseable.count", integer=True, better=-1),
    _Metric("unlabelled", "unlabelled predictions", "coverage.unlabelled.count", integer=True, better=-1),
    _Metric("duplicates", "duplicate predictions", "coverage.duplicates.count", integer=True, better=-1),
    _Metric("exact_accuracy", "exact-match accuracy", "likert.exact_accuracy"),
    _Metric("within_one_accuracy", "within-one accuracy", "likert.within_one_accuracy"),
    _Metric("binary_accuracy", "binary accuracy", "likert.binary.accuracy"),
    _Metric("binary_precision", "binary precision", "likert.binary.precision"),
    _Metric("binary_recall", "binary recall", "likert.binary.recall"),
    _Metric("binary_f1", "binary F1", "likert.binary.f1"),
    _Metric("pearson", "Pearson r", "likert.pearson"),
    _Metric("spearman", "Spearman rho", "likert.spearman"),
    _Metric("mean_absolute_error", "mean absolute error", "likert.mean_absolute_error", better=-1),
    _Metric("joint_label_rate", "joint: labelled rate", "joint.label_rate", better=0),
    _Metric("joint_predicted_rate", "joint: predicted rate", "joint.predicted_rate", better=0),
    _Metric("joint_accuracy", "joint: accuracy", "joint.binary.accuracy"),
    _Metric("joint_f1", "joint: F1", "joint.binary.f1"),
    _Metric("choice_accuracy", "multiple-choice accuracy", "multiple_choice.accuracy"),
    _Metric("calibration_gap", "calibration gap", "calibration.mean_absolute_gap", better=-1),
)


def _point(value: float | Estimate | None) -> float | None:
    if isinstance(value, Estimate):
        return value.value
    return None if value is None else float(value)


def metric_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """The report's metric table: one row per metric some run has, with each run's value and, for two runs,
    the difference second minus first."""
    rows: list[dict[str, Any]] = []
    for metric in _METRICS:
        values = [metric.read(run.summary) for run in runs]
        if all(_point(value) is None for value in values):
            continue
        row: dict[str, Any] = {
            "key": metric.key,
            "label": metric.label,
            "integer": metric.integer,
            "better": metric.better,
            "values": [],
        }
        for value in values:
            entry: dict[str, Any] = {"value": _point(value)}
            if isinstance(value, Estimate):
                entry.update(ci_low=value.ci_low, ci_high=value.ci_high, n=value.n)
            row["values"].append(entry)
        points = [_point(value) for value in values]
        if len(runs) == 2:
            first, second = points
            row["delta"] = None if first is None or second is None else second - first
        rows.append(row)
    return rows


def _group_rows(runs: Sequence[Run], read: Callable[[VideoPhy2Summary], list[GroupAccuracy]]) -> list[dict[str, Any]]:
    names: list[str] = []
    for run in runs:
        for group in read(run.summary):
            if group.group not in names:
                names.append(group.group)
    rows = []
    for name in sorted(names):
        found = [{g.group: g for g in read(run.summary)}.get(name) for run in runs]
        row: dict[str, Any] = {
            "group": name,
            "values": [None if g is None else {"accuracy": g.accuracy, "n": g.n, "correct": g.correct} for g in found],
        }
        if len(runs) == 2:
            a, b = (None if g is None else g.accuracy for g in found)
            row["delta"] = None if a is None or b is None else b - a
        rows.append(row)
    return rows


def _datasets(summary: VideoPhy2Summary) -> list[GroupAccuracy]:
    return summary.multiple_choice.per_dataset if summary.multiple_choice is not None else []


# ---------------------------------------------------------------------------------------------------------
# Plots


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(figure: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _confusion_plot(run: Run) -> Plot | None:
    likert = run.summary.likert
    if likert is None or likert.n == 0:
        return None
    import numpy as np

    matrix, unparseable = likert.confusion.matrix, likert.confusion.unparseable
    counts = np.array([[*row, bad] for row, bad in zip(matrix, unparseable, strict=True)])
    figure = _figure(5.2, 4.2)
    axes = figure.add_subplot()
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes, label="samples")
    columns = [str(value) for value in likert.confusion.classes] + ["?"]
    axes.set_xticks(range(len(columns)), columns)
    axes.set_yticks(range(len(likert.confusion.classes)), [str(c) for c in likert.confusion.classes])
    axes.set_xlabel("predicted score (? = unparseable)")
    axes.set_ylabel(f"label ({likert.label_field})")
    axes.set_title(f"Confusion matrix: {run.name}")
    limit = counts.max() / 2 if counts.size else 0
    for (row, column), value in np.ndenumerate(counts):
        color = "white" if value > limit else "black"
        axes.text(column, row, str(value), ha="center", va="center", color=color, fontsize=9)
    return Plot(f"confusion-{run.name}", f"Labels against predicted scores ({run.name}).", _png(figure))


def _histogram_plot(runs: Sequence[Run]) -> Plot | None:
    likerts = [(run, run.summary.likert) for run in runs if run.summary.likert is not None]
    if not likerts or all(likert.n == 0 for _, likert in likerts):
        return None
    import numpy as np

    classes = likerts[0][1].histogram.classes
    series = [(f"labels ({likerts[0][0].name})", likerts[0][1].histogram.labels, COLORS[2])]
    for index, (run, likert) in enumerate(likerts):
        series.append((f"predicted ({run.name})", likert.histogram.predicted, COLORS[index]))
    figure = _figure(6.0, 3.6)
    axes = figure.add_subplot()
    width = 0.8 / len(series)
    positions = np.arange(len(classes))
    for index, (name, counts, color) in enumerate(series):
        axes.bar(positions + (index - (len(series) - 1) / 2) * width, counts, width, label=name, color=color)
    axes.set_xticks(positions, [str(value) for value in classes])
    axes.set_xlabel("score")
    axes.set_ylabel("samples")
    axes.set_title("Score histogram")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=len(series), fontsize="small", frameon=False)
    return Plot("histogram", "How often each score is labelled and predicted.", _png(figure))


def _calibration_plot(runs: Sequence[Run]) -> Plot | None:
    drawn = [(run, cal) for run in runs if (cal := run.summary.calibration) is not None and cal.bins]
    if not drawn:
        return None
    figure = _figure(5.0, 4.4)
    axes = figure.add_subplot()
    low = min(item.low for _, cal in drawn for item in cal.bins)
    high = max(item.high for _, cal in drawn for item in cal.bins)
    axes.plot([low, high], [low, high], linestyle="--", color="grey", label="perfect calibration")
    for index, (run, cal) in enumerate(drawn):
        x = [item.mean_predicted for item in cal.bins]
        y = [item.mean_label for item in cal.bins]
        largest = max(item.n for item in cal.bins)
        sizes = [20 + 200 * item.n / largest for item in cal.bins]
        axes.plot(x, y, color=COLORS[index], label=f"{run.name} ({cal.source.replace('_', ' ')})")
        axes.scatter(x, y, s=sizes, color=COLORS[index], alpha=0.7)
    axes.set_xlim(low, high)
    axes.set_ylim(low, high)
    axes.set_xlabel("mean predicted score")
    axes.set_ylabel("mean label")
    axes.set_title("Reliability diagram")
    axes.legend(loc="upper left")
    return Plot("calibration", "Mean label per bin of predicted score (marker area: samples in the bin).", _png(figure))


def _group_plot(
    runs: Sequence[Run], read: Callable[[VideoPhy2Summary], list[GroupAccuracy]], key: str, what: str
) -> Plot | None:
    rows = _group_rows(runs, read)
    if not rows:
        return None
    import numpy as np

    height = 1.2 + 0.32 * len(rows) * len(runs)
    figure = _figure(6.4, min(height, 40.0))
    axes: Axes = figure.add_subplot()
    positions = np.arange(len(rows))
    width = 0.8 / len(runs)
    for index, run in enumerate(runs):
        values = [(row["values"][index] or {}).get("accuracy") or 0.0 for row in rows]
        offset = (index - (len(runs) - 1) / 2) * width
        axes.barh(positions + offset, values, width, label=run.name, color=COLORS[index])
    axes.set_yticks(positions, [row["group"] for row in rows])
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("accuracy")
    axes.set_title(f"Accuracy per {what}")
    axes.legend(loc="lower right")
    return Plot(key, f"Accuracy per {what}.", _png(figure))


def _plots(runs: Sequence[Run]) -> list[Plot]:
    candidates = [
        *(_confusion_plot(run) for run in runs),
        _histogram_plot(runs),
        _calibration_plot(runs),
        _group_plot(runs, lambda s: s.per_category, "per-category", f"category ({runs[0].summary.category_key})"),
        _group_plot(runs, _datasets, "per-dataset", "dataset"),
    ]
    return [plot for plot in candidates if plot is not None]


# ---------------------------------------------------------------------------------------------------------
# HTML

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; padding: 0 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f2f2f2; }
td.better { color: #1a7f37; } td.worse { color: #c62828; }
table.details td { text-align: left; }
.ci { color: #666; font-size: 0.85em; }
figure { display: inline-block; margin: 0.5rem 1rem 1rem 0; vertical-align: top; }
figcaption { font-size: 0.85em; color: #555; }
code { background: #f5f5f5; padding: 0 0.2rem; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _number(value: float | None, integer: bool = False) -> str:
    if value is None:
        return "n/a"
    return str(round(value)) if integer else f"{value:.3f}"


def _cell(entry: dict[str, Any] | None, integer: bool = False) -> str:
    if entry is None:
        return "<td>n/a</td>"
    text = _e(_number(entry.get("value", entry.get("accuracy")), integer))
    if entry.get("ci_low") is not None and entry.get("ci_high") is not None:
        text += f' <span class="ci">[{_number(entry["ci_low"])}, {_number(entry["ci_high"])}]</span>'
    if "n" in entry and "ci_low" in entry:
        text += f' <span class="ci">n={_e(entry["n"])}</span>'
    elif "correct" in entry:
        text += f' <span class="ci">{_e(entry["correct"])}/{_e(entry["n"])}</span>'
    return f"<td>{text}</td>"


def _delta_cell(delta: float | None, integer: bool = False, better: int = 1) -> str:
    if delta is None:
        return "<td>n/a</td>"
    style = ' class="better"' if delta * better > 0 else ' class="worse"' if delta * better < 0 else ""
    text = f"{delta:+d}" if integer else f"{delta:+.3f}"
    return f"<td{style}>{_e(text)}</td>"


def _header(runs: Sequence[Run], first: str) -> str:
    cells = "".join(f"<th>{_e(run.name)}</th>" for run in runs)
    delta = f"<th>{_e(f'Δ ({runs[1].name} − {runs[0].name})')}</th>" if len(runs) == 2 else ""
    return f"<thead><tr><th>{_e(first)}</th>{cells}{delta}</tr></thead>"


def _metric_table(runs: Sequence[Run], rows: list[dict[str, Any]]) -> str:
    body = []
    for row in rows:
        cells = "".join(_cell(entry, row["integer"]) for entry in row["values"])
        delta = ""
        if "delta" in row:
            value = row["delta"]
            rounded = None if value is None else (round(value) if row["integer"] else value)
            delta = _delta_cell(rounded, row["integer"], row["better"])
        body.append(f"<tr><td>{_e(row['label'])}</td>{cells}{delta}</tr>")
    return f'<table id="metrics">{_header(runs, "metric")}<tbody>{"".join(body)}</tbody></table>'


def _group_table(runs: Sequence[Run], rows: list[dict[str, Any]], table_id: str, first: str) -> str:
    body = []
    for row in rows:
        cells = "".join(_cell(entry) for entry in row["values"])
        delta = _delta_cell(row["delta"]) if "delta" in row else ""
        body.append(f"<tr><td>{_e(row['group'])}</td>{cells}{delta}</tr>")
    return f'<table id="{_e(table_id)}">{_header(runs, first)}<tbody>{"".join(body)}</tbody></table>'


def _coverage_list(run: Run) -> str:
    coverage = run.summary.coverage
    items = [
        f"<li>manifest samples: {coverage.manifest_samples}, labelled: {coverage.labelled}, "
        f"prediction records: {coverage.predictions}, evaluated: {coverage.evaluated}</li>"
    ]
    for name, count in (
        ("missing", coverage.missing),
        ("not asked", coverage.not_asked),
        ("unparseable", coverage.unparseable),
        ("unlabelled", coverage.unlabelled),
        ("duplicates", coverage.duplicates),
    ):
        ids = ", ".join(f"<code>{_e(sample_id)}</code>" for sample_id in count.first_ids)
        more = " …" if count.count > len(count.first_ids) else ""
        listing = f": {ids}{more}" if ids else ""
        items.append(f'<li data-count="{_e(name)}">{_e(name)}: {count.count}{listing}</li>')
    if coverage.other_score_records:
        items.append(f"<li>score records of other kinds (not used): {coverage.other_score_records}</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _run_details(run: Run) -> str:
    summary = run.summary
    facts = [
        ("task", summary.task),
        ("manifest", summary.manifest),
        ("predictions", summary.predictions),
        ("scores", summary.scores),
        ("models", ", ".join(summary.models) or None),
        ("label", summary.likert.label_field if summary.likert else None),
        (
            "bootstrap",
            f"{summary.bootstrap} resamples, {summary.confidence:.0%} percentile intervals, seed {summary.seed}",
        ),
        ("summary", run.path),
    ]
    rows = "".join(f"<tr><td>{_e(name)}</td><td>{_e(value)}</td></tr>" for name, value in facts if value is not None)
    notes = "".join(f"<li>{_e(note)}</li>" for note in summary.notes)
    return (
        f'<h3>{_e(run.name)}</h3><table class="details">{rows}</table>'
        f"<h4>Coverage</h4>{_coverage_list(run)}<h4>How items are counted</h4><ul>{notes}</ul>"
    )


def _figure_html(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    return (
        f'<figure><img data-plot="{_e(plot.key)}" alt="{_e(plot.caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_e(plot.caption)}</figcaption></figure>"
    )


def _title(runs: Sequence[Run]) -> str:
    if len(runs) == 2:
        return f"VideoPhy-2 evaluation: {runs[0].name} vs {runs[1].name}"
    return f"VideoPhy-2 evaluation: {runs[0].name}"


def render_report(runs: Sequence[Run], title: str | None = None, plots: Sequence[Plot] | None = None) -> str:
    """The HTML page of one run or two runs side by side (plots rendered here unless given)."""
    if not 1 <= len(runs) <= 2:
        raise ValueError(f"a report shows one or two runs, got {len(runs)}")
    if len({run.name for run in runs}) < len(runs):
        raise ValueError(f"both runs are named {runs[0].name!r}: a report tells its runs apart by name")
    heading = title or _title(runs)
    plots = _plots(runs) if plots is None else plots
    sections = [
        f"<h1>{_e(heading)}</h1>",
        "<h2>Metrics</h2>",
        _metric_table(runs, metric_rows(runs)),
    ]
    categories = _group_rows(runs, lambda s: s.per_category)
    if categories:
        sections += [
            f"<h2>Accuracy per category (metadata key <code>{_e(runs[0].summary.category_key)}</code>)</h2>",
            _group_table(runs, categories, "per-category", "category"),
        ]
    datasets = _group_rows(runs, _datasets)
    if datasets:
        sections += ["<h2>Accuracy per dataset</h2>", _group_table(runs, datasets, "per-dataset", "dataset")]
    if plots:
        sections += ["<h2>Plots</h2>", *(_figure_html(plot) for plot in plots)]
    sections += ["<h2>Runs</h2>", *(_run_details(run) for run in runs)]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(heading)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def _names(config: ReportConfig, paths: Sequence[Path]) -> list[str]:
    if config.names is not None:
        if len(config.names) != len(paths):
            raise ValueError(f"{len(config.names)} names given for {len(paths)} runs")
        return list(config.names)
    names = [(path if path.is_dir() else path.parent).resolve().name or str(path) for path in paths]
    if len(names) == 2 and names[0] == names[1]:
        names = [f"{names[0]} (A)", f"{names[1]} (B)"]
    return names


def write_report(config: ReportConfig) -> ReportFiles:
    """Write the HTML report and its JSON summary; returns their paths and how many plots the page holds."""
    paths = [config.run] if config.compare is None else [config.run, config.compare]
    names = _names(config, paths)
    runs = [Run(name, load_summary(path), path) for name, path in zip(names, paths, strict=True)]
    plots = _plots(runs)
    page = render_report(runs, config.title, plots)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(page, encoding="utf-8")
    document = {
        "title": config.title or _title(runs),
        "runs": [
            {"name": run.name, "path": str(run.path), "summary": run.summary.model_dump(mode="json")} for run in runs
        ],
        "metrics": metric_rows(runs),
        "per_category": _group_rows(runs, lambda s: s.per_category),
        "per_dataset": _group_rows(runs, _datasets),
        "plots": [plot.key for plot in plots],
    }
    json_path = config.json_path()
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return ReportFiles(html=config.out, json=json_path, plots=len(plots))
