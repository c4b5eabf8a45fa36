"""Settings of the evaluation jobs: VideoPhy-2 / Likert metrics and HTML reports.

Kept free of heavy imports (numpy, matplotlib): the CLI imports this module when it starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BeforeValidator, Field, model_validator

from cookbook_data.schemas import Strict

TASK_SPELLINGS = {"multiple-choice": "multiple_choice"}
"""Other names a task is given by: `cookbook-infer run --task` spells it with a hyphen, so the same name works
for both commands."""


def _canonical_task(value: object) -> object:
    return TASK_SPELLINGS.get(value, value) if isinstance(value, str) else value


EvalTask = Annotated[Literal["critic", "multiple_choice"], BeforeValidator(_canonical_task)]
LikertKind = Literal["physics_likert", "instruction_likert"]

LIKERT_KIND_OF_LABEL: dict[str, LikertKind] = {"pc": "physics_likert", "sa": "instruction_likert"}
"""The ScoreRecord kind that scores each VideoPhy-2 label, used when ``score_kind`` is not given."""
LABEL_OF_LIKERT_KIND: dict[str, str] = {kind: label for label, kind in LIKERT_KIND_OF_LABEL.items()}
"""The label each Likert kind scores; keyed by `str`, so that any ScoreRecord kind may be looked up."""

InferAnswer = LikertKind | Literal["multiple_choice", "rule"]
"""What a `cookbook-infer run --task` answers that a VideoPhy-2 metric reads."""

RULE_SCALE = (0, 2)
"""The rule task's answers (0 violated, 1 followed, 2 cannot be determined) as ``(min_score, max_score)``: they are
compared with a label of the user's own on this scale, never with a Likert label."""

ANSWER_OF_INFER_TASK: dict[str, InferAnswer | None] = {
    "critic": "physics_likert",
    "critic-thinking": "physics_likert",
    "adherence": "instruction_likert",
    "multiple-choice": "multiple_choice",
    "caption": None,
    "vqa": None,
    "approve-reject": None,
    "rule": "rule",
    "reward-yesno": None,
}
"""What the answers of each `cookbook-infer run --task` are, named as a Prediction's `task` begins: a Likert
score of the kind the label of :data:`LIKERT_KIND_OF_LABEL` is scored by, option letters, the rule task's 0-2
(:data:`RULE_SCALE`), or (None) answers no VideoPhy-2 metric reads (free text, verdicts). Predictions of a task
that does not fit the evaluation asked for are refused: their metrics would be wrong, not merely poor."""

NonEmpty = Annotated[str, Field(min_length=1)]


class VideoPhy2Config(Strict):
    """Metrics of a critic (Likert scores 1-5) or of multiple-choice answers against a labelled manifest."""

    manifest: Path = Field(description="VideoSample JSONL manifest holding the labels.")
    predictions: Path | None = Field(
        default=None,
        description=(
            "Prediction JSONL (parsed answers) of `cookbook-infer run`; give this or `scores`, not both. Its task "
            "must fit: critic or critic-thinking for label `pc`, adherence for `sa`, either for another label, "
            "rule for another label on the scale 0-2 (`min_score` 0, `max_score` 2), multiple-choice for task "
            "multiple_choice."
        ),
    )
    scores: Path | None = Field(
        default=None, description="ScoreRecord JSONL (Likert scores); give this or `predictions`, not both."
    )
    out: Path = Field(description="Folder to write summary.json and config.resolved.json into.")
    task: EvalTask = Field(
        default="critic",
        description=(
            "critic: integer scores against a Likert label; multiple_choice (or multiple-choice, as cookbook-infer "
            "spells it): option letters against a label."
        ),
    )
    label_field: NonEmpty = Field(default="pc", description="Label holding the Likert score the critic predicts.")
    score_kind: LikertKind | None = Field(
        default=None,
        description=(
            "ScoreRecord kind holding the critic's score (with `scores`); None: physics_likert for label `pc`, "
            "instruction_likert for label `sa`."
        ),
    )
    min_score: int = Field(default=1, description="Lowest score of the Likert scale.")
    max_score: int = Field(default=5, description="Highest score of the Likert scale.")
    threshold: int = Field(
        default=4, description="Scores at or above this count as positive (plausible / adherent) in binary metrics."
    )
    physics_label: NonEmpty = Field(default="pc", description="Label of physical commonsense, for the joint metric.")
    adherence_label: NonEmpty = Field(default="sa", description="Label of semantic adherence, for the joint metric.")
    answer_field: NonEmpty = Field(default="answer", description="Label holding the option letter (multiple_choice).")
    category_key: NonEmpty = Field(
        default="category",
        description="Key grouping samples into categories, read from each sample's metadata, else its labels.",
    )
    dataset_key: NonEmpty = Field(
        default="dataset",
        description="Key naming each sample's dataset (metadata, else labels), for accuracy per dataset.",
    )
    bootstrap: int = Field(
        default=1000, ge=0, description="Bootstrap resamples for confidence intervals; 0 computes no intervals."
    )
    confidence: float = Field(default=0.95, gt=0, lt=1, description="Coverage of the percentile confidence intervals.")
    seed: int = Field(default=0, description="Seed of the bootstrap resampling.")
    calibration_bins: int = Field(
        default=10, ge=1, description="Bins over the scale for a reliability diagram of expected scores."
    )
    max_listed_ids: int = Field(
        default=20, ge=0, description="How many ids of missing, unlabelled or unparseable items the summary lists."
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.predictions is None) == (self.scores is None):
            raise ValueError("give either `predictions` or `scores`")
        if self.min_score >= self.max_score:
            raise ValueError("`min_score` must be below `max_score`")
        if not self.min_score < self.threshold <= self.max_score:
            raise ValueError("`threshold` must lie above `min_score` and at most `max_score`")
        if self.task == "multiple_choice" and self.scores is not None:
            raise ValueError("multiple_choice is evaluated from `predictions`, not `scores`")
        if self.scores is not None and self.score_kind is None and self.label_field not in LIKERT_KIND_OF_LABEL:
            raise ValueError(f"label `{self.label_field}` has no default score kind: set `score_kind`")
        kind, implied = self.score_kind, LIKERT_KIND_OF_LABEL.get(self.label_field)
        if self.scores is not None and kind is not None and implied is not None and kind != implied:
            raise ValueError(
                f"label `{self.label_field}` is scored by {implied}, not {kind}: leave `score_kind` unset, or "
                f"compare {kind} with label `{LABEL_OF_LIKERT_KIND[kind]}`"
            )
        return self

    def likert_kind(self) -> LikertKind:
        """The ScoreRecord kind scored against ``label_field``."""
        return self.score_kind or LIKERT_KIND_OF_LABEL.get(self.label_field, "physics_likert")


class ReportConfig(Strict):
    """A self-contained HTML report of one evaluation, or of two side by side."""

    run: Path = Field(description="summary.json of an evaluation, or the folder holding it.")
    compare: Path | None = Field(
        default=None, description="A second summary.json (or its folder) shown beside the first, with deltas."
    )
    out: Path = Field(default=Path("report.html"), description="HTML file to write.")
    json_out: Path | None = Field(
        default=None, description="JSON summary of the report to write; None: the HTML path with a .json suffix."
    )
    title: str | None = Field(default=None, description="Heading of the report; None: derived from the runs.")
    names: list[NonEmpty] | None = Field(
        default=None,
        min_length=1,
        max_length=2,
        description=(
            "Column names of the runs, different from each other; None: the names of the folders holding their "
            "summaries (the same folder name twice becomes '<name> (A)' and '<name> (B)')."
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.names is not None and len(set(self.names)) < len(self.names):
            raise ValueError(
                f"both runs are named {self.names[0]!r}: give each run its own name (they head the report's columns)"
            )
        if self.json_path().resolve() == self.out.resolve():
            raise ValueError(
                f"the HTML report and its JSON summary would both be written to {self.out}: give `out` an .html "
                "name, or `json_out` another path"
            )
        return self

    def json_path(self) -> Path:
        """Where the JSON summary goes."""
        return self.json_out if self.json_out is not None else self.out.with_suffix(".json")
