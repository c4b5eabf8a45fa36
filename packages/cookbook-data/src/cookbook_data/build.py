"""Dataset building: a VideoSample manifest and a prompt template in, a training dataset for cosmos-rl out.

:func:`build_sft` and :func:`build_rl` write a Hugging Face ``DatasetDict`` (``train``, ``val``) with
``save_to_disk``; each row holds

- ``id``: the ``VideoSample.id``;
- ``conversations``: the JSON string of the Qwen-VL message list cosmos-rl's dataset plugins read — system
  turn, user turn with the video part (absolute path plus the vision settings) before the prompt text, and,
  for SFT only, the assistant turn with the target;
- ``reference``: the reference answer as a string (the critic's digit, the caption, the VQA answer, the
  option letter), what GRPO rewards compare with and what evaluation scores against.

Tasks and targets (the layout follows the template unless ``target_format`` says otherwise):

- ``critic``: VideoPhy-2 physical-commonsense score (``labels.pc``, an integer 1-5). With the Reason1 prompt
  the target is ``<answer>\\n4\\n</answer>``; with the Reason2 prompt the bare digit. The Reason1 *thinking*
  prompt asks for ``<think>…</think>\\n\\n<answer>…</answer>``: an SFT target cannot invent the reasoning,
  so SFT keeps only samples carrying their own reasoning text (``labels.reasoning``) and drops the others
  (reason ``missing_reasoning``); RL needs only the reference and takes every sample.
- ``caption``: target = the sample's caption.
- ``vqa``: ``labels.question`` fills the template's ``{question}``; target = ``labels.answer``.
- ``multiple_choice``: ``labels.question`` and ``labels.options`` (a list of texts, listed as ``A. …``)
  fill ``{question}`` and ``{options}``; target = the answer letter ``labels.answer``.

Guarantees: the split is a hash of the id (stable across runs, machines and manifest orders); balancing
and shuffling depend on the seed and the ids only; of samples with the same video contents (SHA-256 of the
bytes) the one with the smallest id is kept, whatever the manifest order; of records sharing an id, one is kept
when they are identical and none when they differ (``conflicting_id``), whatever the order; nothing is left out
silently — every sample that does not reach the dataset is a line of ``dropped.jsonl`` (an ``ItemError`` whose
``error_type`` is the reason) and is counted in the report.
Balancing applies to the train split; ``val`` keeps the natural label distribution.

The output folder holds the saved ``DatasetDict``, ``config.resolved.json``, ``build_info.json`` (the
:class:`BuildReport`, with the vision settings evaluation must reuse; read it with :func:`read_build_info`)
and ``dropped.jsonl``. The folder appears whole or not at all: it is written beside and renamed at the end.
"""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from cookbook_data._balance import Balance, Split, balance, label_counts, shuffled, split_of
from cookbook_data.jobs import write_resolved_config
from cookbook_data.prompts import PromptTemplate, load_prompt, template_file
from cookbook_data.records import JsonlWriter, differing_fields, read_records
from cookbook_data.schemas import AssistantMessage, Conversation, ItemError, Strict, VideoSample
from cookbook_data.tasks import (
    CLASS_TASKS,
    DEFAULT_PROMPTS,
    DROP_REASONS,
    Dropped,
    DropReason,
    Example,
    LabelFields,
    TargetFormat,
    Task,
    check_template,
    example_of,
    infer_target_format,
    resolve_path,
    target_text,
)
from cookbook_data.video import VideoDecodeError, VisionSettings, probe, video_tokens
from cookbook_data.vision_options import REASON1_TOTAL_PIXELS, VisionOptions

__all__ = [
    "BUILD_INFO",
    "DEFAULT_PROMPTS",
    "DROPPED",
    "DROP_REASONS",
    "REASON1_TOTAL_PIXELS",
    "BuildConfig",
    "BuildError",
    "BuildReport",
    "build_rl",
    "build_sft",
    "infer_target_format",
    "read_build_info",
    "split_of",
]

BUILD_INFO = "build_info.json"
DROPPED = "dropped.jsonl"
COLUMNS = ("id", "conversations", "reference")
SPLITS: tuple[Split, ...] = ("train", "val")

Kind = Literal["sft", "rl"]


class BuildError(ValueError):
    """The build cannot produce a usable dataset (for instance no sample reaches the train split)."""


class BuildConfig(VisionOptions):
    """How to turn a VideoSample manifest into an SFT or RL dataset (and the vision settings of its rows)."""

    manifest: Path = Field(description="JSONL file of VideoSample records; relative video paths are relative to it.")
    out: Path = Field(description="Folder to write the dataset, config.resolved.json, build_info.json, dropped.jsonl.")
    task: Task = Field(
        default="critic",
        description="critic (VideoPhy-2 score), caption, vqa (question/answer) or multiple_choice (letter).",
    )
    prompt: str | None = Field(
        default=None,
        description=(
            "Shipped prompt name or YAML file; None: reason1_videophy2_critic for critic, "
            "else the shipped template named after the task."
        ),
    )
    target_format: TargetFormat | None = Field(
        default=None,
        description=(
            "SFT target layout: plain answer, answer_tag (<answer>..</answer>) or think_and_answer_tag; "
            "None: what the template asks for (<think> in it, else <answer> in it, else plain)."
        ),
    )
    label_field: str = Field(default="pc", min_length=1, description="Label holding the critic's integer score.")
    min_score: int = Field(default=1, description="Lowest valid critic score.")
    max_score: int = Field(default=5, description="Highest valid critic score.")
    question_field: str = Field(default="question", min_length=1, description="Label holding the question (vqa, mc).")
    options_field: str = Field(
        default="options", min_length=1, description="Label holding the list of option texts (multiple_choice)."
    )
    answer_field: str = Field(
        default="answer", min_length=1, description="Label holding the answer text (vqa) or letter (multiple_choice)."
    )
    reasoning_field: str = Field(
        default="reasoning",
        min_length=1,
        description="Label holding a sample's own reasoning text, required for SFT with a thinking prompt.",
    )
    balance: Balance = Field(
        default="none",
        description=(
            "Train-split label balancing: none, down (every class cut to the smallest) or up (every class "
            "repeated up to the largest). Not for caption."
        ),
    )
    seed: int = Field(default=0, description="Seed of balancing and shuffling (results depend on it and the ids).")
    val_fraction: float = Field(
        default=0.1, ge=0, lt=1, description="Share of ids put in the val split, chosen by a hash of the id."
    )
    split_salt: str = Field(default="", description="Text mixed into the split hash; change it for another split.")
    shuffle: bool = Field(default=True, description="Order train rows by a seeded hash; off keeps the manifest order.")
    dedup: bool = Field(
        default=True,
        description="Of samples with the same video bytes (SHA-256), keep only the one with the smallest id.",
    )
    probe_videos: bool = Field(
        default=True,
        description="Open each video's header and check its frames are all in the file and enough for the vision "
        "settings.",
    )
    workers: int = Field(default=4, ge=1, description="Threads hashing and probing video files.")
    overwrite: bool = Field(default=False, description="Replace an existing build in `out`.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.balance != "none" and self.task == "caption":
            raise ValueError("balancing needs class labels; task caption has none")
        if self.min_score > self.max_score:
            raise ValueError(f"min_score ({self.min_score}) is above max_score ({self.max_score})")
        return self

    def prompt_source(self) -> str:
        """The prompt name or file this build uses."""
        return self.prompt if self.prompt is not None else DEFAULT_PROMPTS[self.task]

    def resolved_patch_factor(self) -> Literal[28, 32]:
        """The patch factor given, else that of the shipped prompt's model family (32 for the reason2 prompts,
        28 for the others). A user's template file names no model (its file name is no evidence), and a build
        for the wrong one is refused only when training starts, so it must be given."""
        if self.patch_factor is not None:
            return self.patch_factor
        source = self.prompt_source()
        if template_file(source) is not None:
            raise ValueError(
                f"prompt {source} is a template file, which names no model: give the patch factor of the model the "
                "data is for (--patch-factor 28 for Reason 1 / Qwen2.5-VL, 32 for Reason 2 / Qwen3-VL)"
            )
        return 32 if source.startswith("reason2") else 28

    def label_fields(self) -> LabelFields:
        return LabelFields(
            score=self.label_field,
            min_score=self.min_score,
            max_score=self.max_score,
            question=self.question_field,
            options=self.options_field,
            answer=self.answer_field,
            reasoning=self.reasoning_field,
        )


class BuildReport(Strict):
    """What a build did; also written as ``build_info.json`` so later stages read the same settings back."""

    schema_version: Literal[1] = Field(default=1, description="Layout version of this report.")
    kind: Kind = Field(description="sft (with the assistant turn) or rl (prompt only, plus reference).")
    task: Task = Field(description="Task the rows were built for.")
    prompt: str = Field(description="Template id, name@version (version = hash of the template file).")
    target_format: TargetFormat = Field(description="Layout of the SFT target (and of the answer RL expects).")
    vision: VisionSettings = Field(description="Vision settings of every video part; evaluation must reuse them.")
    out: str = Field(description="Absolute path of the output folder.")
    columns: list[str] = Field(description="Columns of every split.")
    total: int = Field(description="Records in the manifest.")
    rows: dict[str, int] = Field(description="Rows per split (up-sampled copies included).")
    dropped: dict[str, int] = Field(description="Samples left out, by reason (details in dropped.jsonl).")
    duplicates: dict[str, str] = Field(description="Dropped id -> kept id, for samples with identical video bytes.")
    train_labels_before: dict[str, int] = Field(description="Labels of the train split before balancing.")
    train_labels_after: dict[str, int] = Field(description="Labels of the train split as saved.")
    val_labels: dict[str, int] = Field(description="Labels of the val split (never balanced).")
    max_video_tokens: int | None = Field(
        default=None,
        description="Most tokens one video of the dataset takes in the model's input (None: videos not probed); "
        "training checks its max_length leaves room beside it.",
    )

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def summary(self) -> str:
        """One line for a person."""
        dropped = ", ".join(f"{count} {reason}" for reason, count in self.dropped.items() if count) or "none"
        return (
            f"build-{self.kind} {self.task}: {self.rows.get('train', 0)} train / {self.rows.get('val', 0)} val rows "
            f"from {self.total} samples; dropped: {dropped}; prompt {self.prompt} -> {self.out}"
        )


def read_build_info(folder: str | Path) -> BuildReport:
    """The report a build wrote into ``folder`` (its vision settings, prompt and counts)."""
    path = Path(folder) / BUILD_INFO
    return BuildReport.model_validate_json(path.read_text(encoding="utf-8"))


@dataclass
class _Candidate:
    sample: VideoSample
    path: Path
    example: Example
    split: Split


@dataclass
class _FileCheck:
    digest: str | None = None
    problem: Dropped | None = None
    tokens: int | None = None
    """The video's tokens in the model's input, when probed."""
    absent: bool = False
    """The file does not exist: a sample that names its url can have it fetched again."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_file(path: Path, vision: VisionSettings, *, probe_video: bool, hash_bytes: bool) -> _FileCheck:
    if not path.is_file():
        return _FileCheck(problem=Dropped("missing_file", f"{path}: no such file"), absent=True)
    tokens = None
    if probe_video:
        try:
            tokens = video_tokens(vision, probe(path))
        except VideoDecodeError as error:
            return _FileCheck(problem=Dropped("bad_video", str(error)))
        except ValueError as error:
            return _FileCheck(problem=Dropped("bad_video", f"{path}: {error} (with these vision settings)"))
    try:
        return _FileCheck(digest=_sha256(path) if hash_bytes else None, tokens=tokens)
    except OSError as error:
        return _FileCheck(problem=Dropped("missing_file", f"{path}: cannot be read ({error})"))


def _prepare_out(out: Path, overwrite: bool) -> Path:
    """Check ``out`` may be written and return the empty staging folder beside it."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise FileExistsError(f"{out}: exists and is not empty; pass overwrite=True to replace a previous build")
        if not (out / BUILD_INFO).is_file():
            raise FileExistsError(f"{out}: exists and holds no {BUILD_INFO}; refusing to replace something else")
    staging = out.parent / f".{out.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def _row(
    kind: Kind,
    template: PromptTemplate,
    target_format: TargetFormat,
    vision: VisionSettings,
    candidate: _Candidate,
) -> dict[str, str]:
    example = candidate.example
    conversation = template.render(**example.values).conversation([vision.video_part(str(candidate.path))])
    if kind == "sft":
        target = target_text(target_format, example.reference, example.reasoning)
        conversation = Conversation(messages=[*conversation.messages, AssistantMessage(content=target)])
    return {"id": candidate.sample.id, "conversations": conversation.to_messages_json(), "reference": example.reference}


def _save(folder: Path, splits: dict[Split, list[dict[str, str]]]) -> None:
    from datasets import Dataset, DatasetDict, Features, Value

    features = Features({column: Value("string") for column in COLUMNS})
    data = DatasetDict(
        {
            name: Dataset.from_dict({column: [row[column] for row in rows] for column in COLUMNS}, features=features)
            for name, rows in splits.items()
        }
    )
    # An empty split saved with the default zero shards cannot be loaded back; one empty shard can.
    data.save_to_disk(str(folder), num_shards={name: 1 for name, rows in splits.items() if not rows})


def _counts(task: Task, balance_mode: Balance, candidates: Iterable[_Candidate]) -> dict[str, int]:
    if task not in CLASS_TASKS and not (task == "vqa" and balance_mode != "none"):
        return {}
    return label_counts(candidate.example.reference for candidate in candidates)


def _build(config: BuildConfig, kind: Kind) -> BuildReport:
    template = load_prompt(config.prompt_source())
    check_template(template, config.task)
    target_format = config.target_format or infer_target_format(template)
    vision = config.vision_settings()
    out = config.out.absolute()
    staging = _prepare_out(out, config.overwrite)
    try:
        report = _build_into(staging, out, config, kind, template, target_format, vision)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


class _Drops:
    """Samples left out so far, as the ItemError lines of ``dropped.jsonl``."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.items: list[ItemError] = []

    def add(self, sample_id: str, reason: DropReason, message: str) -> None:
        self.items.append(ItemError(sample_id=sample_id, stage=self.stage, error_type=reason, message=message))

    def counts(self) -> dict[str, int]:
        by_reason = Counter(item.error_type for item in self.items)
        return {reason: by_reason[reason] for reason in DROP_REASONS if by_reason[reason]}


def _read_candidates(
    config: BuildConfig, kind: Kind, target_format: TargetFormat, drops: _Drops
) -> tuple[int, list[_Candidate]]:
    """Manifest records whose labels fit the task, with their video path and split; the rest are dropped."""
    fields = config.label_fields()
    manifest_dir = config.manifest.absolute().parent
    samples = list(read_records(config.manifest, VideoSample))
    conflicts = _conflicts(samples)
    seen: set[str] = set()
    candidates: list[_Candidate] = []
    for sample in samples:
        if sample.id in conflicts:
            drops.add(sample.id, "conflicting_id", conflicts[sample.id])
            continue
        if sample.id in seen:
            message = f"id {sample.id!r} appears more than once in the manifest, each time the same record; one is used"
            drops.add(sample.id, "duplicate_id", message)
            continue
        seen.add(sample.id)
        try:
            example = example_of(sample, config.task, fields)
            if kind == "sft" and target_format == "think_and_answer_tag" and example.reasoning is None:
                raise Dropped(
                    "missing_reasoning",
                    f"labels.{fields.reasoning} is missing: an SFT target for a thinking prompt needs the "
                    "sample's own reasoning text (it is never invented); build an RL dataset or use a "
                    "prompt without <think>",
                )
            path = resolve_path(sample, manifest_dir)
        except Dropped as problem:
            drops.add(sample.id, problem.reason, problem.message)
            continue
        split = split_of(sample.id, config.val_fraction, config.split_salt)
        candidates.append(_Candidate(sample, path, example, split))
    return len(samples), candidates


def _conflicts(samples: list[VideoSample]) -> dict[str, str]:
    """Ids held by records that differ, each with the message of its drops: none of them is used, whatever the
    order of the lines (a manifest written by a Ray run, or two manifests joined, has no meaningful order)."""
    copies: dict[str, list[VideoSample]] = {}
    for sample in samples:
        copies.setdefault(sample.id, []).append(sample)
    conflicts = {}
    for key, same_id in copies.items():
        if len(same_id) > 1 and (fields := differing_fields([copy.model_dump(mode="json") for copy in same_id])):
            conflicts[key] = (
                f"id {key!r} is held by {len(same_id)} records of the manifest that differ in {', '.join(fields)}; "
                "none is used, as which is right cannot be told: keep one"
            )
    return conflicts


def _check_videos(
    config: BuildConfig, vision: VisionSettings, candidates: list[_Candidate], drops: _Drops
) -> tuple[list[_Candidate], dict[str, str], int | None]:
    """Candidates whose file exists, opens and (with dedup) holds bytes no candidate with a smaller id has; the
    duplicates found, dropped id -> kept id; and the most tokens a kept video takes (None when not probed).
    The smallest id, not the first in the manifest, is kept so the same ids make the same dataset in any order
    (validation on a Ray cluster writes rows in the order they finish). Each distinct path is checked once, on
    worker threads."""
    unique_paths = list(dict.fromkeys(candidate.path for candidate in candidates))

    def check(path: Path) -> _FileCheck:
        return _check_file(path, vision, probe_video=config.probe_videos, hash_bytes=config.dedup)

    with ThreadPoolExecutor(max_workers=config.workers) as pool:
        checks = dict(zip(unique_paths, pool.map(check, unique_paths), strict=True))
    kept: list[_Candidate] = []
    keeper: dict[str, str] = {}
    for candidate in candidates:
        if (digest := checks[candidate.path].digest) is not None:
            keeper[digest] = min(keeper.get(digest, candidate.sample.id), candidate.sample.id)
    duplicates: dict[str, str] = {}
    for candidate in candidates:
        result = checks[candidate.path]
        if result.problem is not None:
            drops.add(
                candidate.sample.id, result.problem.reason, result.problem.message + _refetch_hint(candidate, result)
            )
            continue
        if result.digest is not None and (smallest := keeper[result.digest]) != candidate.sample.id:
            duplicates[candidate.sample.id] = smallest
            drops.add(
                candidate.sample.id,
                "duplicate_content",
                f"{candidate.path}: same bytes (sha256 {result.digest[:12]}) as sample {smallest!r}, which is kept",
            )
            continue
        kept.append(candidate)
    tokens = [checks[candidate.path].tokens for candidate in kept]
    return kept, duplicates, max((t for t in tokens if t is not None), default=None)


def _refetch_hint(candidate: _Candidate, result: _FileCheck) -> str:
    """How to get a missing video back when its sample knows where it came from (a cache cleaned or moved)."""
    if result.absent and candidate.sample.url is not None:
        return (
            f"; its url is {candidate.sample.url}: rerun `cookbook-data ingest videophy2 --download` to fetch it again"
        )
    return ""


def _sample_id(candidate: _Candidate) -> str:
    return candidate.sample.id


def _reference(candidate: _Candidate) -> str:
    return candidate.example.reference


def _build_into(
    staging: Path,
    out: Path,
    config: BuildConfig,
    kind: Kind,
    template: PromptTemplate,
    target_format: TargetFormat,
    vision: VisionSettings,
) -> BuildReport:
    drops = _Drops(f"build-{kind}")
    total, candidates = _read_candidates(config, kind, target_format, drops)
    kept, duplicates, max_video_tokens = _check_videos(config, vision, candidates, drops)

    train = [candidate for candidate in kept if candidate.split == "train"]
    val = [candidate for candidate in kept if candidate.split == "val"]
    train_before = _counts(config.task, config.balance, train)
    train, removed = balance(train, _reference, _sample_id, config.balance, config.seed)
    for candidate in removed:
        drops.add(
            candidate.sample.id,
            "downsampled",
            f"label {candidate.example.reference!r} down-sampled to the smallest class (seed {config.seed})",
        )
    if config.shuffle:
        train = shuffled(train, _sample_id, config.seed)
    if not train:
        counts = [f"{count} {reason}" for reason, count in drops.counts().items()]
        if val:
            counts.append(f"{len(val)} hashed into val (val_fraction {config.val_fraction})")
        causes = ", ".join(counts) or "no samples"
        first = f"; first: {drops.items[0].sample_id}: {drops.items[0].message}" if drops.items else ""
        raise BuildError(f"{config.manifest}: no sample reached the train split ({causes}){first}")

    splits: dict[Split, list[dict[str, str]]] = {
        "train": [_row(kind, template, target_format, vision, candidate) for candidate in train],
        "val": [_row(kind, template, target_format, vision, candidate) for candidate in val],
    }
    _save(staging, splits)
    with JsonlWriter(staging / DROPPED, ItemError) as writer:
        writer.write_all(drops.items)
    resolved: dict[str, Any] = {
        "prompt": config.prompt_source(),
        "target_format": target_format,
        "patch_factor": vision.patch_factor,
        "fps": vision.fps,
    }
    write_resolved_config(staging, config.model_copy(update=resolved))
    report = BuildReport(
        kind=kind,
        task=config.task,
        prompt=template.id,
        target_format=target_format,
        vision=vision,
        out=str(out),
        columns=list(COLUMNS),
        total=total,
        rows={name: len(rows) for name, rows in splits.items()},
        dropped=drops.counts(),
        duplicates=duplicates,
        train_labels_before=train_before,
        train_labels_after=_counts(config.task, config.balance, train),
        val_labels=_counts(config.task, config.balance, val),
        max_video_tokens=max_video_tokens,
    )
    (staging / BUILD_INFO).write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return report


def build_sft(config: BuildConfig) -> BuildReport:
    """Build an SFT dataset: every row's conversation ends with the assistant turn holding the target."""
    return _build(config, "sft")


def build_rl(config: BuildConfig) -> BuildReport:
    """Build a GRPO dataset: every row's conversation is the prompt alone; ``reference`` holds the answer."""
    return _build(config, "rl")
