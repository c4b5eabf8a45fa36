"""Reason as Reward: scorers that turn a judging model's answers and token probabilities into ScoreRecords.

Every scorer has one interface, ``score(samples) -> list[ScoreRecord]`` (one record per sample, in order), so
the batch job, the reward service and the GRPO reward functions use them alike. ``prepare(sample)`` decodes a
sample's video for the model ahead of ``score`` (the score job's CPU step); ``score`` takes samples prepared or
not. A scorer asks its question
through a :class:`~cookbook_infer.run.Predictor` (the same prompts, vision settings and backends as
``cookbook-infer run``) and reads, where it can, the model's probabilities of the possible answers at the
position where it wrote its answer. The probability-weighted score (the *expected score*) is continuous and
calibrated; the parsed digit alone is not.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from cookbook_data.schemas import ADHERENCE_NOT_ASKED, Prediction, ScoreKind, ScoreRecord, VideoSample
from cookbook_infer.backends.base import Backend, CandidateProbabilities
from cookbook_infer.parsing import score_offset
from cookbook_infer.run import Item, Predictor, flat_videos, sample_of
from cookbook_infer.tasks import TASKS, InferenceTask, get_task
from cookbook_infer.vision import ModelVideo
from cookbook_reward.config import ScorerConfig
from cookbook_reward.trajectory import (
    Trajectory,
    VerifierConfig,
    combine_with_verdict,
    load_trajectory,
    trajectory_from_data,
    verify_trajectory,
)

LIKERT_CANDIDATES = ("1", "2", "3", "4", "5")
RULE_CANDIDATES = ("0", "1", "2")
YES_NO_CANDIDATES = ("Yes", "No")


class Scorer(Protocol):
    """Scores samples; one record per sample, in order. Raising fails the whole batch (the job then retries
    its samples one by one, so one bad video fails only itself)."""

    kind: ScoreKind

    def score(self, samples: Sequence[Item]) -> list[ScoreRecord]: ...

    def prepare(self, sample: Item) -> Item:
        """The sample with its video decoded for the model (no model needed), or as it is when nothing is."""
        ...

    def resolved(self) -> dict[str, Any]:
        """What the scores depend on, for config.resolved.json."""
        ...


def expected_value(probabilities: dict[str, float]) -> float:
    """Σ k·p(k) over numeric candidates whose probabilities are renormalised to sum to 1."""
    return sum(float(candidate) * p for candidate, p in probabilities.items())


def _mean_probabilities(distributions: Sequence[CandidateProbabilities]) -> dict[str, float]:
    if not distributions:
        return {}
    keys = distributions[0].probabilities
    return {key: statistics.fmean(d.probabilities[key] for d in distributions) for key in keys}


@dataclass
class AnswerScorer:
    """Scores from generated answers: each sample is asked ``samples`` times; the parsed answers give the score
    (their mean, or their most frequent value for categories) and, when ``candidates`` are set, the answer
    token's distribution gives the probabilities and (for ``expected``) the expected score."""

    predictor: Predictor
    kind: ScoreKind
    value: Callable[[str], float]
    """Score of a parsed answer."""
    candidates: tuple[str, ...] | None
    expected: bool
    aggregate: Literal["mean", "mode"] = "mean"
    samples: int = 1
    decodes: bool = True
    """Whether videos are decoded here for the model; not for a model behind a server, which reads them itself
    (and refuses frames sent to it)."""

    def __post_init__(self) -> None:
        if self.samples > 1 and self.predictor.sampling.temperature == 0:
            raise ValueError(f"samples = {self.samples} needs temperature > 0 (greedy answers are all the same)")

    def resolved(self) -> dict[str, Any]:
        return {"scorer": self.kind, "samples": self.samples, **self.predictor.resolved()}

    def prepare(self, sample: Item) -> Item:
        return self.predictor.prepare(sample) if self.decodes else sample

    def score(self, samples: Sequence[Item]) -> list[ScoreRecord]:
        n = self.samples
        unwrapped, conversations, videos = self.predictor.ask(samples)
        conversations = [c for c in conversations for _ in range(n)]
        videos = None if videos is None else [v for v in videos for _ in range(n)]
        asked = [sample for sample in unwrapped for _ in range(n)]
        predictions = self.predictor.answer(asked, conversations, flat_videos(videos))
        distributions = self._distributions(conversations, videos, predictions)
        return [
            self._record(sample, predictions[i * n : (i + 1) * n], distributions[i * n : (i + 1) * n])
            for i, sample in enumerate(unwrapped)
        ]

    def _distributions(
        self,
        conversations: Sequence[Any],
        videos: Sequence[tuple[ModelVideo, ...]] | None,
        predictions: Sequence[Prediction],
    ) -> list[CandidateProbabilities | None]:
        """The candidates' probabilities where each answer was written (None where it cannot be found)."""
        found: list[CandidateProbabilities | None] = [None] * len(predictions)
        if self.candidates is None:
            return found
        where = [
            (i, offset)
            for i, prediction in enumerate(predictions)
            if prediction.answer is not None and (offset := score_offset(prediction.raw_text)) is not None
        ]
        if not where:
            return found
        read = self.predictor.backend.next_token_probabilities(
            [conversations[i] for i, _ in where],
            self.candidates,
            [predictions[i].raw_text[:offset] for i, offset in where],
            flat_videos(None if videos is None else [videos[i] for i, _ in where]),
        )
        for (i, _), distribution in zip(where, read, strict=True):
            found[i] = distribution
        return found

    def _record(
        self,
        sample: VideoSample,
        predictions: Sequence[Prediction],
        distributions: Sequence[CandidateProbabilities | None],
    ) -> ScoreRecord:
        scores = [None if p.answer is None else self.value(p.answer) for p in predictions]
        parsed = [s for s in scores if s is not None]
        read = [d for d in distributions if d is not None]
        score: float | None = None
        if parsed:
            score = statistics.fmean(parsed) if self.aggregate == "mean" else Counter(parsed).most_common(1)[0][0]
        critique = next((p.thinking for p in predictions if p.thinking), None)
        return ScoreRecord(
            sample_id=sample.id,
            score=score,
            score_kind=self.kind,
            model=self.predictor.spec.id,
            critique=critique,
            expected_score=statistics.fmean(expected_value(d.probabilities) for d in read)
            if self.expected and read
            else None,
            score_std=statistics.pstdev(parsed) if parsed else None,
            sample_scores=scores,
            probabilities=_mean_probabilities(read),
            rewards={"parsed_fraction": len(parsed) / len(scores), **_mass(read)},
        )


def _mass(read: Sequence[CandidateProbabilities]) -> dict[str, float]:
    """How much probability the model put on the candidates at all (low: the position was not an answer)."""
    return {"candidate_mass": statistics.fmean(d.mass for d in read)} if read else {}


@dataclass
class YesNoScorer:
    """The Cosmos-Reason1-7B-Reward method: one forward pass per video, softmax over the "Yes"/"No" logits of
    the first answer token; the score is P("No"): higher means fewer anomalies."""

    predictor: Predictor
    kind: ScoreKind = "reward_model_yes_no"

    def resolved(self) -> dict[str, Any]:
        return {"scorer": self.kind, "candidates": list(YES_NO_CANDIDATES), **self.predictor.resolved()}

    def prepare(self, sample: Item) -> Item:
        return self.predictor.prepare(sample)

    def score(self, samples: Sequence[Item]) -> list[ScoreRecord]:
        unwrapped, conversations, videos = self.predictor.ask(samples)
        read = self.predictor.backend.next_token_probabilities(
            conversations, YES_NO_CANDIDATES, videos=flat_videos(videos)
        )
        return [
            ScoreRecord(
                sample_id=sample.id,
                score=distribution.probabilities["No"],
                score_kind=self.kind,
                model=self.predictor.spec.id,
                probabilities=distribution.probabilities,
                rewards=_mass([distribution]),
            )
            for sample, distribution in zip(unwrapped, read, strict=True)
        ]


@dataclass
class JointScorer:
    """VideoPhy-2's joint verdict: physical commonsense and semantic adherence both at least ``threshold``."""

    physics: AnswerScorer
    adherence: AnswerScorer
    threshold: int
    kind: ScoreKind = "videophy2_joint"

    def resolved(self) -> dict[str, Any]:
        return {
            "scorer": self.kind,
            "threshold": self.threshold,
            "physics": self.physics.resolved(),
            "adherence": self.adherence.resolved(),
        }

    def prepare(self, sample: Item) -> Item:
        """Decoded once for both questions (they ask about the same frames)."""
        return self.physics.prepare(sample)

    def _unaskable(self, sample: VideoSample) -> str | None:
        """Why the adherence question cannot be asked about ``sample`` (no caption), or None."""
        try:
            self.adherence.predictor.conversations([sample])
        except ValueError as error:
            return str(error)
        return None

    def score(self, samples: Sequence[Item]) -> list[ScoreRecord]:
        """A sample without a caption keeps its physics score (in ``rewards``) and gets no joint verdict,
        instead of failing after its physics answer was generated."""
        ready = self.physics.predictor.prepare_batch(samples)  # decoded once, asked twice
        physics = self.physics.score(ready)
        unaskable = [self._unaskable(item.sample) for item in ready]
        askable = [item for item, why in zip(ready, unaskable, strict=True) if why is None]
        answered = iter(self.adherence.score(askable) if askable else [])
        records = []
        for item, pc, why in zip(ready, physics, unaskable, strict=True):
            sample, sa = item.sample, None if why is not None else next(answered)
            joint = None
            if sa is not None and pc.score is not None and sa.score is not None:
                joint = float(pc.score >= self.threshold and sa.score >= self.threshold)
            parts = {"physics": pc} if sa is None else {"physics": pc, "adherence": sa}
            rewards = {name: part.score for name, part in parts.items() if part.score is not None}
            rewards |= {
                f"{name}_expected": r.expected_score for name, r in parts.items() if r.expected_score is not None
            }
            critiques = [f"{name}: {part.critique}" for name, part in parts.items() if part.critique]
            if why is not None:
                critiques.append(f"{ADHERENCE_NOT_ASKED} ({why})")
            records.append(
                ScoreRecord(
                    sample_id=sample.id,
                    score=joint,
                    score_kind=self.kind,
                    model=pc.model,
                    critique="\n\n".join(critiques) or None,
                    rewards=rewards,
                )
            )
        return records


@dataclass
class TrajectoryScorer:
    """The kinematic verifier on each sample's waypoints (``metadata.trajectory``: a file, relative paths from
    the manifest's folder, or the waypoints inline); with a ``verdict`` scorer, its score on the sample's video
    (the rendered clip) is combined with the kinematic reward."""

    media_root: Path
    verifier: VerifierConfig
    verdict: AnswerScorer | None = None
    verdict_weight: float = 0.5
    kind: ScoreKind = "trajectory"

    def resolved(self) -> dict[str, Any]:
        return {
            "scorer": self.kind,
            "verifier": self.verifier.model_dump(mode="json"),
            "verdict": None if self.verdict is None else self.verdict.resolved(),
            "verdict_weight": self.verdict_weight,
        }

    def _trajectory(self, sample: VideoSample) -> Trajectory:
        """The waypoints in ``metadata.trajectory``: a file path, or the waypoints themselves (as JSON)."""
        value = sample.metadata.get("trajectory")
        if isinstance(value, dict | list):
            return trajectory_from_data(value)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{sample.id}: metadata.trajectory must name the waypoint file, got {value!r}")
        path = Path(value)
        return load_trajectory(path if path.is_absolute() else self.media_root / path)

    def prepare(self, sample: Item) -> Item:
        return sample if self.verdict is None else self.verdict.prepare(sample)

    def score(self, samples: Sequence[Item]) -> list[ScoreRecord]:
        unwrapped = [sample_of(item) for item in samples]
        reports = [verify_trajectory(self._trajectory(sample), self.verifier) for sample in unwrapped]
        verdicts = self.verdict.score(samples) if self.verdict is not None else [None] * len(samples)
        records = []
        for sample, report, verdict in zip(unwrapped, reports, verdicts, strict=True):
            failed = [check.name for check in report.checks if not check.passed]
            critique = f"failed: {', '.join(failed)}" if failed else "all checks passed"
            vlm = None if verdict is None else verdict.score
            if verdict is not None and verdict.critique:
                critique += f"\n\nverdict: {verdict.critique}"
            rewards = {check.name: float(check.passed) for check in report.checks} | {"kinematics": report.reward}
            if vlm is not None:
                rewards["verdict"] = vlm
            records.append(
                ScoreRecord(
                    sample_id=sample.id,
                    score=combine_with_verdict(report, vlm, self.verdict_weight) if verdict else report.reward,
                    score_kind=self.kind,
                    model=None if verdict is None else verdict.model,
                    critique=critique,
                    rewards=rewards,
                )
            )
        return records


def _score_value(answer: str) -> float:
    return float(answer)


def _approval(answer: str) -> float:
    return 1.0 if answer == "approve" else 0.0


@dataclass(frozen=True)
class _Question:
    """What an :class:`AnswerScorer` asks (an inference task) and how it reads the answers."""

    task: str
    kind: ScoreKind
    value: Callable[[str], float]
    candidates: tuple[str, ...] | None
    expected: bool
    aggregate: Literal["mean", "mode"] = "mean"


QUESTIONS: dict[str, _Question] = {
    "likert": _Question("critic", "physics_likert", _score_value, LIKERT_CANDIDATES, expected=True),
    "adherence": _Question("adherence", "instruction_likert", _score_value, LIKERT_CANDIDATES, expected=True),
    "rule": _Question("rule", "physics_rule", _score_value, RULE_CANDIDATES, expected=False, aggregate="mode"),
    "critic": _Question("approve-reject", "approve_reject", _approval, None, expected=False),
}
"""The answer-reading scorers by their ``--scorer`` name."""


def _task(name: str, reasoning: bool) -> InferenceTask:
    """The task, asking for reasoning when wanted: its ``-thinking`` variant (a template of its own, as the
    published Reason1 critic has) or else the same template with the reasoning request appended."""
    task = get_task(name)
    if reasoning and not task.reasoning:
        task = TASKS.get(f"{name}-thinking") or replace(task, reasoning=True)
    return task


def _reads_probabilities(scorer: str) -> bool:
    """Whether the scorer reads next-token probabilities (which a chat-completion server does not return)."""
    return scorer in ("yesno", "videophy2") or (scorer in QUESTIONS and QUESTIONS[scorer].candidates is not None)


def build_scorer(config: ScorerConfig, media_root: Path, backend: Backend | None = None) -> Scorer:
    """The scorer ``config`` names, its model loaded once (or ``backend`` used) and shared by its parts."""
    if backend is None and config.backend == "openai" and _reads_probabilities(config.scorer):
        raise ValueError(
            f"--scorer {config.scorer} reads the answer token's probabilities, which an OpenAI-compatible server "
            "does not return; use --backend transformers or vllm (or --scorer critic, which reads answers only)"
        )

    def predictor(task: InferenceTask) -> Predictor:
        nonlocal backend
        made = Predictor.from_config(config, media_root, backend, task)
        backend = made.backend
        return made

    def ask(name: str) -> AnswerScorer:
        question = QUESTIONS[name]
        return AnswerScorer(
            predictor(_task(question.task, config.reasoning)),
            question.kind,
            question.value,
            question.candidates,
            question.expected,
            question.aggregate,
            config.samples,
            decodes=config.local_model,
        )

    if config.scorer in QUESTIONS:
        return ask(config.scorer)
    if config.scorer == "videophy2":
        return JointScorer(ask("likert"), ask("adherence"), config.joint_threshold)
    if config.scorer == "yesno":
        return YesNoScorer(predictor(get_task("reward-yesno")))
    verdict = ask("critic") if config.model is not None else None
    return TrajectoryScorer(media_root, VerifierConfig(), verdict, config.vlm_weight)


RULE_REWARDS = {0.0: 0.0, 1.0: 1.0, 2.0: 0.5}
"""Reward of the rule task's answers: violated 0, followed 1, cannot be determined 0.5."""


def reward_of(record: ScoreRecord) -> float | None:
    """A score on the common 0-1 reward scale (higher is better), so scorers can be weighed and swapped:
    Likert scores map 1..5 to 0..1 (the expected score when there is one, it is continuous), the rule task
    as :data:`RULE_REWARDS`, and the others are already probabilities or 0/1 verdicts. None without a score."""
    if record.score_kind in ("physics_likert", "instruction_likert"):
        value = record.expected_score if record.expected_score is not None else record.score
        return None if value is None else (value - 1) / 4
    if record.score is None:
        return None
    if record.score_kind == "physics_rule":
        return RULE_REWARDS[record.score]
    return record.score
