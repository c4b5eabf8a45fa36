"""Reading the datasets ``cookbook-data build-sft`` / ``build-rl`` write, for both backends.

A built dataset is a ``DatasetDict`` saved with ``save_to_disk`` (splits ``train`` and ``val``; columns ``id``,
``conversations`` — the JSON string of the message list, vision settings inside each video part — and
``reference``), with ``build_info.json`` beside it. :func:`check_dataset` verifies, before anything is launched,
that the folder suits the recipe: the right kind of build, vision settings made for the model's patch size, and
rows whose conversations parse, whose videos exist and whose references the recipe's rewards can read
(cosmos-rl retries a failing sample 50 times and then stops the whole run, so bad rows are caught here instead),
and that fit ``max_length`` (:class:`LengthBudget`; the local trainers count the rows it cannot clear again with
:func:`check_lengths` before their first step).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable
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
    unchecked: int = 0
    """Rows whose length only a tokenizer could tell, when the model's was not at hand without the network."""
    backend: str = "local"

    def describe(self) -> str:
        counts = ", ".join(f"{split} {count}" for split, count in self.rows.items())
        line = f"{self.folder} (build-{self.build.kind} {self.build.task}, prompt {self.build.prompt}; rows: {counts})"
        if self.unchecked:
            then = (
                "the local trainer checks them before its first step"
                if self.backend == "local"
                else "cosmos-rl would cut an over-long one at its end"
            )
            line += (
                f"; {self.unchecked} row(s) not checked against max_length (too long to clear without the model's "
                f"tokenizer and each video's own frames, or with its tokenizer out of reach without the network; "
                f"{then})"
            )
        return line


def check_dataset(config: TrainConfig) -> DatasetSummary:
    """Check that ``config.dataset`` suits the recipe; raises :class:`DatasetError` naming the problem.

    Every row of each used split is parsed and its video files looked up (each file once):
    about 50 µs a row, a minute for a million rows, where one missing video found by cosmos-rl stops a whole
    multi-GPU run after 50 retries. Its length is bounded by its text's bytes and its videos' budget; the rows
    that bound does not clear are tokenized when the model's processor is at hand without the network (about
    350 µs a row), else counted as unchecked in the summary.
    """
    folder = config.dataset
    build = _check_build(config)
    rewards = reward_functions(config) if isinstance(config, GRPOConfig) else []
    splits = [config.train_split] + ([config.val_split] if config.validate_every is not None else [])
    rows: dict[str, int] = {}
    found: set[str] = set()
    budget = LengthBudget.of(config, build)
    uncleared: dict[str, list[tuple[int, str, Conversation]]] = {}
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
            if not budget.clears(sequence := _sequence(config, conversation)):
                uncleared.setdefault(split, []).append((index, str(row.get("id")), sequence))
            for part in prompt.video_parts():
                if part.video not in found and "://" not in part.video and not Path(part.video).is_file():
                    raise DatasetError(f"{where}: video {part.video} does not exist")
                found.add(part.video)
    unchecked = _check_text_lengths(config, budget, uncleared)
    return DatasetSummary(folder=folder, build=build, rows=rows, unchecked=unchecked, backend=config.backend)


def _check_build(config: TrainConfig) -> BuildReport:
    """The dataset's build report, checked against the recipe: kind, patch factor, frame sampling, room for a
    video."""
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
    return build


def _sequence(config: TrainConfig, conversation: Conversation) -> Conversation:
    """What a row's sequence holds before any generation: the whole conversation for SFT, the prompt for GRPO."""
    return conversation if config.kind == "sft" else split_target(conversation)[0]


def _check_text_lengths(
    config: TrainConfig, budget: LengthBudget, uncleared: dict[str, list[tuple[int, str, Conversation]]]
) -> int:
    """Tokenize the rows the byte bound did not clear, when the model's processor is at hand without the network:
    refuse those whose text alone exceeds ``max_length``, clear those that fit with each video counted at the
    dataset's longest, and return how many are left unchecked (a row with a short video may fit where the
    longest would not; only its frames, which the trainer samples, can tell)."""
    if not uncleared:
        return 0
    processor = cached_processor(config.model)
    if processor is None:
        return sum(len(items) for items in uncleared.values())
    from cookbook_train.local._batch import text_tokens

    unchecked = 0
    for split, items in uncleared.items():
        over = []
        for index, row_id, sequence in items:
            tokens = text_tokens(processor, sequence)
            if budget.floor(tokens) > config.max_length:
                over.append(OverLong(index, row_id, budget.floor(tokens)))
            elif not budget.fits(tokens, sequence):
                unchecked += 1
        what = budget.counted("text tokenized, before its videos")
        refuse_over_long(f"{config.dataset} split {split!r}", over, config.max_length, what)
    return unchecked


def check_lengths(
    config: TrainConfig, split: str, rows: Any, processor: Any, count: Callable[[Conversation], int]
) -> None:
    """Refuse, before the first step, the rows of ``split`` whose sequence exceeds ``max_length``, counted by
    ``count`` (the trainer's own building of a row's model input, videos sampled), rather than stop at the first
    one hours into the run. Rows the byte bound clears, or their tokenized text with each video at the dataset's
    longest, are not counted (``count`` decodes the videos: a thousand times the cost); for GRPO the sequence is
    the prompt and ``count`` adds the room kept for the answer."""
    from cookbook_train.local._batch import text_tokens

    budget = LengthBudget.of(config, read_build_info(config.dataset))
    over = []
    for index in range(len(rows)):
        row = rows[index]
        sequence = _sequence(config, parse_conversation(row["conversations"]))
        if budget.clears(sequence) or budget.fits(text_tokens(processor, sequence), sequence):
            continue
        if (tokens := count(sequence)) > config.max_length:
            over.append(OverLong(index, str(row.get("id")), tokens))
    refuse_over_long(f"{config.dataset} split {split!r}", over, config.max_length, budget.counted("video included"))


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


def _video_budget(build: BuildReport) -> tuple[int, str] | None:
    """Most tokens one video of the dataset takes, and how that is known; None when the build cannot tell. The
    build measured its longest video (``max_video_tokens``); a build that did not probe its videos is held to its
    pixel budget, ``total_pixels`` / patch², which a video reaches once it is long enough."""
    vision = build.vision
    if build.max_video_tokens is not None:
        video = build.max_video_tokens
        return video, f"the dataset's longest video takes {video} tokens (measured by the build)"
    if vision.total_pixels is not None:
        video = math.ceil(vision.total_pixels / vision.patch_factor**2)
        return video, f"a video can take {video} tokens (total_pixels {vision.total_pixels} / {vision.patch_factor}²)"
    return None


def _answer_room(config: TrainConfig) -> int:
    """Tokens a sequence holds beyond its rows' text and videos: the answer GRPO generates (SFT's is in the row)."""
    return config.max_response_length if isinstance(config, GRPOConfig) else 0


def _check_sequence_room(config: TrainConfig, build: BuildReport) -> None:
    """Refuse a ``max_length`` that a video of the dataset can fill by itself: cosmos-rl then cuts the sequence
    short at its end, the answer being trained on, and only logs it (unchecked when the build cannot tell a
    video's size)."""
    budget = _video_budget(build)
    if budget is None:
        return
    video, what = budget
    answer = _answer_room(config)
    needed = video + answer + TEXT_ROOM
    if needed > config.max_length:
        generated = f" + max_response_length {answer}" if answer else ""
        raise DatasetError(
            f"{config.dataset}: {what}{generated}, and max_length {config.max_length} leaves less than "
            f"{TEXT_ROOM} for the prompt's text and the answer; set max_length to at least {needed}, or rebuild "
            "with a smaller --total-pixels, fewer frames or shorter videos"
        )


TEMPLATE_TOKENS = 48
"""Most tokens the Qwen chat templates add to a conversation as a whole: the default system turn Reason1's
template writes when a conversation has none, the assistant turn's opening and its end."""
TEMPLATE_TOKENS_PER_MESSAGE = 8
"""Most tokens the Qwen chat templates wrap each message in (``<|im_start|>``, the role, ``<|im_end|>``, newlines)."""
VIDEO_MARK_TOKENS = 2
"""``<|vision_start|>`` and ``<|vision_end|>`` around each video (its ``<|video_pad|>`` becomes its video tokens)."""
TIMESTAMP_TOKENS = 19
"""Most tokens of the text Qwen3-VL writes before each pair of frames: ``<T seconds>`` (at most 17 bytes for a
video under a day) and that pair's own ``<|vision_start|>``/``<|vision_end|>``."""


@dataclass(frozen=True)
class LengthBudget:
    """What a row's sequence may hold, for telling cheaply which rows cannot exceed ``max_length``."""

    max_length: int
    video_bound: int | None
    """Most tokens one video surely takes: the build's measure of its longest (None when it did not probe them;
    a video grows past ``total_pixels`` once it is long enough)."""
    per_video_text: int
    """Most text tokens the processor writes around one video besides its marks (Qwen3-VL's frame timestamps)."""
    answer: int
    """Room kept for a generated answer (GRPO's ``max_response_length``; 0 for SFT)."""

    @classmethod
    def of(cls, config: TrainConfig, build: BuildReport) -> LengthBudget:
        vision = build.vision
        video = (_video_budget(build) or (0, ""))[0]
        per_video_text = 0
        if config.model_type() == "qwen3_vl":
            frames = vision.nframes or vision.max_strided_frames or vision.max_frames
            smallest_pair = (vision.min_pixels or vision.default_min_pixels) // vision.patch_factor**2
            pairs = min(frames // 2 + 1, video // max(1, smallest_pair) + 1)
            per_video_text = pairs * TIMESTAMP_TOKENS
        return cls(config.max_length, build.max_video_tokens, per_video_text, _answer_room(config))

    def bound(self, conversation: Conversation) -> int | None:
        """An upper bound on the row's tokens, without a tokenizer (None when its videos have none, or it holds an
        image): a byte-level BPE tokenizer never makes more tokens of a text than the UTF-8 bytes of its NFC form
        (Qwen's normalises to NFC first, which lengthens some characters), and the chat template and each video
        add at most known counts."""
        videos = len(conversation.video_parts())
        if (videos and self.video_bound is None) or bool(conversation.image_parts()):
            return None
        per_video = VIDEO_MARK_TOKENS + (self.video_bound or 0) + self.per_video_text
        text = sum(_nfc_bytes(_text(message.content)) for message in conversation.messages)
        template = TEMPLATE_TOKENS + TEMPLATE_TOKENS_PER_MESSAGE * len(conversation.messages)
        return text + template + videos * per_video + self.answer

    def clears(self, conversation: Conversation) -> bool:
        """Whether the row surely fits ``max_length``, by its bound."""
        bound = self.bound(conversation)
        return bound is not None and bound <= self.max_length

    def floor(self, text_tokens: int) -> int:
        """The fewest tokens a row can take, from its chat-template text's token count (one placeholder token per
        video, each of which becomes at least one video token)."""
        return text_tokens + self.answer

    def fits(self, text_tokens: int, conversation: Conversation) -> bool:
        """Whether a row surely fits ``max_length``, from its chat-template text's token count: each video counted
        at the dataset's longest with the text the processor writes around it (unknown, so never, when the
        build did not measure its videos), no image."""
        videos = len(conversation.video_parts())
        if (videos and self.video_bound is None) or bool(conversation.image_parts()):
            return False
        per_video = (self.video_bound or 0) - 1 + self.per_video_text
        return text_tokens + videos * per_video + self.answer <= self.max_length

    def counted(self, what: str) -> str:
        """How a refusal's token counts were made: ``what``, and the room kept for the answer."""
        return what + (f", with max_response_length {self.answer}" if self.answer else "")


def _nfc_bytes(text: str) -> int:
    return len(unicodedata.normalize("NFC", text).encode())


@dataclass(frozen=True)
class OverLong:
    """A row whose sequence exceeds ``max_length``."""

    index: int
    id: str
    tokens: int


def refuse_over_long(where: str, over: list[OverLong], max_length: int, what: str) -> None:
    """Raise one :class:`DatasetError` naming how many rows of ``where`` exceed ``max_length`` and the first few."""
    if not over:
        return
    shown = ", ".join(f"row {row.index} (id {row.id!r}) {row.tokens}" for row in over[:5])
    more = f", and {len(over) - 5} more" if len(over) > 5 else ""
    raise DatasetError(
        f"{where}: {len(over)} row(s) exceed max_length {max_length} in tokens ({what}): {shown}{more}; raise "
        "max_length, or shorten or drop these rows (a longer sequence would be cut at its end, the answer)"
    )


def cached_processor(model: str) -> Any | None:
    """The model's processor when it can be had without the network — a local folder, or a hub id whose files
    are in the Hugging Face cache — else None. A hub id that is not cached would be retried for minutes
    offline, and a recipe's model may be a folder that an earlier run has yet to write. A cached one is loaded
    from its snapshot folder: ``from_pretrained(hub_id, local_files_only=True)`` still asks the hub about files
    the snapshot does not hold (a minute of retries offline)."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    folder = Path(model)
    if not folder.is_dir():
        try:
            cached = try_to_load_from_cache(model, "tokenizer_config.json")
        except HFValidationError:  # a path, not a hub id
            return None
        if not isinstance(cached, str):
            return None
        folder = Path(cached).parent
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(str(folder))  # type: ignore[no-untyped-call]
    except (OSError, ValueError):  # a snapshot holding part of the files
        return None


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
