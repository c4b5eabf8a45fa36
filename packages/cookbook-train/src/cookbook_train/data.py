"""Reading the datasets ``cookbook-data build-sft`` / ``build-rl`` write, for both backends.

A built dataset is a ``DatasetDict`` saved with ``save_to_disk`` (splits ``train`` and ``val``; columns ``id``,
``conversations`` — the JSON string of the message list, vision settings inside each video part — and
``reference``), with ``build_info.json`` beside it. :func:`check_dataset` verifies, before anything is launched,
that the folder suits the recipe: the right kind of build, vision settings made for the model's patch size, and
rows whose conversations parse, whose videos exist and whose references the recipe's rewards can read
(cosmos-rl retries a failing sample 50 times and then stops the whole run, so bad rows are caught here instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cookbook_data.build import BUILD_INFO, BuildReport, read_build_info
from cookbook_data.build import Kind as BuildKind
from cookbook_data.schemas import AssistantMessage, Conversation, TextPart
from cookbook_train.config import MODEL_TYPES, GRPOConfig, Kind, TrainConfig
from cookbook_train.rewards import WeightedReward, reward_functions, reward_name

PATCH_FACTORS = {"reason1": 28, "reason2": 32}
"""Patch factor a dataset's vision settings must have for each architecture."""
BUILD_KINDS: dict[Kind, BuildKind] = {"sft": "sft", "grpo": "rl"}
"""The build each recipe kind trains on. SFT learns the assistant turn that only build-sft writes; a build-sft
prompt mostly asks for no reasoning (an SFT target cannot invent it), so GRPO on it could not earn the format
reward."""


class DatasetError(ValueError):
    """The dataset folder does not suit the recipe; the message names the folder and the problem."""


def load_split(folder: Path, split: str) -> Any:
    """One split of a saved ``DatasetDict`` (memory-mapped, cheap to open)."""
    from datasets import load_from_disk

    try:
        splits = load_from_disk(str(folder))
    except FileNotFoundError as error:
        raise DatasetError(f"{folder}: not a saved dataset ({error})") from None
    if split not in splits:
        raise DatasetError(f"{folder}: no split {split!r} (splits: {', '.join(splits)})")
    return splits[split]


def parse_conversation(text: str) -> Conversation:
    """A row's ``conversations`` JSON string as a validated conversation."""
    return Conversation.from_messages_json(text)


def _text(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content if isinstance(part, TextPart))


def split_target(conversation: Conversation) -> tuple[Conversation, str | None]:
    """The prompt (every turn before a final assistant turn) and that turn's text (None when there is none)."""
    *head, last = conversation.messages
    if isinstance(last, AssistantMessage):
        return Conversation(messages=head), _text(last.content)
    return conversation, None


@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`check_dataset` found."""

    folder: Path
    build: BuildReport
    rows: dict[str, int]

    def describe(self) -> str:
        counts = ", ".join(f"{split} {count}" for split, count in self.rows.items())
        return f"{self.folder} (build-{self.build.kind} {self.build.task}, prompt {self.build.prompt}; rows: {counts})"


def check_dataset(config: TrainConfig) -> DatasetSummary:
    """Check that ``config.dataset`` suits the recipe; raises :class:`DatasetError` naming the problem.

    Every row of each used split is parsed and its video files looked up (each file once):
    about 50 µs a row, a minute for a million rows, where one missing video found by cosmos-rl stops a whole
    multi-GPU run after 50 retries.
    """
    folder = config.dataset
    if not (folder / BUILD_INFO).is_file():
        raise DatasetError(f"{folder}: no {BUILD_INFO}; pass a folder written by cookbook-data build-sft/build-rl")
    build = read_build_info(folder)
    if build.kind != BUILD_KINDS[config.kind]:
        raise DatasetError(
            f"{folder}: a build-{build.kind} dataset; {config.kind.upper()} needs one written by "
            f"build-{BUILD_KINDS[config.kind]}"
        )
    arch = config.resolved_arch()
    if build.vision.patch_factor != PATCH_FACTORS[arch]:
        raise DatasetError(
            f"{folder}: built with patch factor {build.vision.patch_factor}, but {config.model} is {arch} "
            f"({MODEL_TYPES[arch]}, patch factor {PATCH_FACTORS[arch]}); rebuild with --patch-factor "
            f"{PATCH_FACTORS[arch]}"
        )
    if config.backend == "cosmos-rl" and build.vision.max_strided_frames is not None:
        raise DatasetError(
            f"{folder}: built with max_strided_frames = {build.vision.max_strided_frames}, which cosmos-rl's data "
            "packers (qwen-vl-utils) do not read: they would sample 2 frames a second, not the frames the dataset "
            "names; rebuild it with --fps or --nframes, or train with --backend local"
        )
    _check_sequence_room(config, build)
    rewards = reward_functions(config) if isinstance(config, GRPOConfig) else []
    splits = [config.train_split] + ([config.val_split] if config.validate_every is not None else [])
    rows: dict[str, int] = {}
    found: set[str] = set()
    for split in splits:
        data = load_split(folder, split)
        rows[split] = len(data)
        if not len(data):
            raise DatasetError(f"{folder}: split {split!r} is empty")
        for index in range(len(data)):
            row = data[index]
            where = f"{folder} split {split!r} row {index} (id {row.get('id')!r})"
            try:
                conversation = parse_conversation(row["conversations"])
            except (ValueError, KeyError) as error:
                raise DatasetError(f"{where}: conversations do not parse: {error}") from None
            prompt, target = split_target(conversation)
            if config.kind == "sft" and target is None:
                raise DatasetError(f"{where}: no final assistant turn to train on")
            if config.kind == "grpo" and not str(row.get("reference") or "").strip():
                raise DatasetError(f"{where}: no reference answer for the rewards")
            _check_rewards_read(rewards, row, where)
            for part in prompt.video_parts():
                if part.video not in found and "://" not in part.video and not Path(part.video).is_file():
                    raise DatasetError(f"{where}: video {part.video} does not exist")
                found.add(part.video)
    return DatasetSummary(folder=folder, build=build, rows=rows)


def _check_rewards_read(rewards: list[WeightedReward], row: dict[str, Any], where: str) -> None:
    """Refuse a reference a reward cannot read (a score where ``choice_accuracy`` wants an option letter): the
    reward raises on it, and cosmos-rl would meet that in the middle of a run. A reward reads its reference
    before the completion, so an empty completion is enough to find out."""
    for fn, _ in rewards:
        try:
            fn("", row["reference"])
        except ValueError as error:
            raise DatasetError(f"{where}: reward {reward_name(fn)!r} cannot use its reference: {error}") from None


TEXT_ROOM = 256
"""Tokens left at least for a prompt's text and a short answer beside its video."""


def _check_sequence_room(config: TrainConfig, build: BuildReport) -> None:
    """Refuse a ``max_length`` that a video of the dataset can fill by itself: cosmos-rl then cuts the sequence
    short at its end, the answer being trained on, and only logs it. The build measured its longest video
    (``max_video_tokens``); a build that did not probe its videos is held to its pixel budget, ``total_pixels`` /
    patch², which a video reaches once it is long enough (unchecked without a budget)."""
    vision = build.vision
    if build.max_video_tokens is not None:
        video = build.max_video_tokens
        what = f"the dataset's longest video takes {video} tokens (measured by the build)"
    elif vision.total_pixels is not None:
        video = math.ceil(vision.total_pixels / vision.patch_factor**2)
        what = f"a video can take {video} tokens (total_pixels {vision.total_pixels} / {vision.patch_factor}²)"
    else:
        return
    answer = config.max_response_length if isinstance(config, GRPOConfig) else 0
    needed = video + answer + TEXT_ROOM
    if needed > config.max_length:
        generated = f" + max_response_length {answer}" if answer else ""
        raise DatasetError(
            f"{config.dataset}: {what}{generated}, and max_length {config.max_length} leaves less than "
            f"{TEXT_ROOM} for the prompt's text and the answer; set max_length to at least {needed}, or rebuild "
            "with a smaller --total-pixels, fewer frames or shorter videos"
        )


def messages_of(row: dict[str, Any], *, keep_target: bool) -> list[dict[str, Any]]:
    """A row's message list as plain dicts (the form cosmos-rl's data packers take), the final assistant turn
    kept or dropped."""
    conversation = parse_conversation(row["conversations"])
    if not keep_target:
        conversation = split_target(conversation)[0]
    return conversation.to_messages()


def reference_of(row: dict[str, Any]) -> str:
    """A row's reference answer."""
    return str(row["reference"])
