"""Record schemas: the contracts between the stages of the toolkit.

Every stage reads and writes these records as JSONL (see :mod:`cookbook_data.records`), so a file written by
one container can be read by the next without the first one installed. Each record carries a
``schema_version``; a reader meeting a version it does not know fails with a message instead of guessing.
All models forbid unknown fields, so a typo in a hand-written manifest is an error that names the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)

SCHEMA_VERSION: Literal[1] = 1
"""Version written into every record. Bump it (and add a migration) when a record changes incompatibly."""

NonEmptyStr = Annotated[str, Field(min_length=1)]
PixelCount = Annotated[int, Field(gt=0)]


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each bad field and its problem: ``labels.pc: Input should be ...; id: Field required``.
    A check of the whole object (a model validator) gives its own message alone, without pydantic's "Value
    error, " prefix: it already says what is wrong and with which fields."""
    parts = []
    for item in error.errors():
        where = ".".join(str(loc) for loc in item["loc"])
        parts.append(f"{where}: {problem_message(item)}" if where else problem_message(item))
    return "; ".join(parts)


def problem_message(problem: Mapping[str, Any]) -> str:
    """The message of one of a ValidationError's problems; a validator's own ``ValueError`` as it was raised,
    without the "Value error, " pydantic puts before it."""
    cause = problem.get("ctx", {}).get("error")
    return str(cause) if problem["type"] == "value_error" and cause is not None else str(problem["msg"])


class Strict(BaseModel):
    """Base for configs and records: unknown fields are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Record(Strict):
    """Base for records stored as JSONL lines."""

    schema_version: Literal[1] = Field(
        default=SCHEMA_VERSION, description="Version of the record layout this line was written with."
    )


class VideoSample(Record):
    """One video and what is known about it: the unit every stage iterates over."""

    id: NonEmptyStr = Field(description="Stable identifier, unique within a manifest; joins all later records.")
    path: NonEmptyStr | None = Field(
        default=None, description="Local file path of the video (absolute, or relative to the manifest)."
    )
    url: NonEmptyStr | None = Field(default=None, description="Where the video can be downloaded from.")
    caption: str | None = Field(
        default=None, description="Text describing the video, or the prompt the video was generated from."
    )
    labels: dict[str, JsonValue] = Field(
        default_factory=dict,
        description=(
            "Ground-truth labels, e.g. VideoPhy-2 `pc` (physical commonsense 1-5) and `sa` (semantic adherence 1-5)."
        ),
    )
    metadata: dict[str, JsonValue] = Field(
        default_factory=dict, description="Anything else carried along (source dataset, category, ...)."
    )

    @model_validator(mode="after")
    def _needs_a_location(self) -> Self:
        if self.path is None and self.url is None:
            raise ValueError("a video sample needs a `path` or a `url`")
        return self


class TextPart(Strict):
    """Plain text inside a message."""

    type: Literal["text"] = "text"
    text: str = Field(description="The text.")


class ImagePart(Strict):
    """An image inside a message, in the Qwen-VL message format."""

    type: Literal["image"] = "image"
    image: NonEmptyStr = Field(description="Absolute path or URL of the image.")
    min_pixels: PixelCount | None = Field(default=None, description="Lower bound of the resized image area.")
    max_pixels: PixelCount | None = Field(default=None, description="Upper bound of the resized image area.")


FRAME_RULES = ("fps", "nframes", "max_strided_frames")
"""The ways of choosing a video's frames; a video part or vision settings name at most one."""


def given_frame_rules(settings: object) -> dict[str, Any]:
    """The :data:`FRAME_RULES` that ``settings`` (a video part, vision settings or a config carrying them) set."""
    return {name: value for name in FRAME_RULES if (value := getattr(settings, name)) is not None}


def check_one_frame_rule(settings: object) -> None:
    """Raise when ``settings`` (a video part or vision settings) set more than one of :data:`FRAME_RULES`."""
    chosen = list(given_frame_rules(settings))
    if len(chosen) > 1:
        raise ValueError(f"give one of `fps`, `nframes` or `max_strided_frames`, not {' and '.join(chosen)}")


class VideoPart(Strict):
    """A video inside a message, with the vision settings it must be sampled with (Qwen-VL message format)."""

    type: Literal["video"] = "video"
    video: NonEmptyStr = Field(description="Absolute path or URL of the video.")
    fps: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="Frames per second to sample; exclusive with `nframes`."
    )
    nframes: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="Exact number of frames to sample; exclusive with `fps`."
    )
    max_strided_frames: Annotated[int, Field(ge=2)] | None = Field(
        default=None, description="Every k-th frame, at most this many (even); exclusive with `fps` and `nframes`."
    )
    min_frames: Annotated[int, Field(gt=0)] | None = Field(default=None, description="Fewest frames to keep.")
    max_frames: Annotated[int, Field(gt=0)] | None = Field(default=None, description="Most frames to keep.")
    min_pixels: PixelCount | None = Field(default=None, description="Lower bound of each frame's area.")
    max_pixels: PixelCount | None = Field(default=None, description="Upper bound of each frame's area.")
    total_pixels: PixelCount | None = Field(
        default=None, description="Budget of pixels over all sampled frames together."
    )

    @model_validator(mode="after")
    def _one_frame_rule(self) -> Self:
        check_one_frame_rule(self)
        return self


ContentPart = Annotated[TextPart | ImagePart | VideoPart, Field(discriminator="type")]


def _content_form(value: Any) -> str:
    return "text" if isinstance(value, str) else "parts"


Content = Annotated[
    Annotated[str, Tag("text")] | Annotated[list[ContentPart], Tag("parts")],
    Discriminator(_content_form),
]
"""A message's content: plain text, or a list of parts. Tagged so validation errors read
``messages.1.user.content.parts.0.video.fsp`` rather than listing every union member."""


class SystemMessage(Strict):
    """Instructions the model sees before the conversation."""

    role: Literal["system"] = "system"
    content: Content = Field(description="Text, or a list of parts.")


class UserMessage(Strict):
    """A user turn: media parts and text."""

    role: Literal["user"] = "user"
    content: Content = Field(description="Text, or a list of media and text parts.")


class AssistantMessage(Strict):
    """A model turn: the training target in SFT data, absent from GRPO prompts."""

    role: Literal["assistant"] = "assistant"
    content: Content = Field(description="Text, or a list of parts.")


Message = Annotated[SystemMessage | UserMessage | AssistantMessage, Field(discriminator="role")]
_MESSAGES = TypeAdapter(list[Message])


class Conversation(Record):
    """A chat in the Qwen-VL message format, the form cosmos-rl's dataset plugins consume.

    cosmos-rl stores a conversation as a JSON string of the bare message list; :meth:`to_messages_json`
    and :meth:`from_messages_json` convert to and from that form, dropping unset optional keys so the
    string holds exactly what the model's processor expects.
    """

    messages: list[Message] = Field(min_length=1, description="System, user and assistant turns in order.")

    def video_parts(self) -> list[VideoPart]:
        """The video parts of all messages, in order."""
        return [part for part in self._parts() if isinstance(part, VideoPart)]

    def image_parts(self) -> list[ImagePart]:
        """The image parts of all messages, in order."""
        return [part for part in self._parts() if isinstance(part, ImagePart)]

    def _parts(self) -> Iterator[ContentPart]:
        for message in self.messages:
            if isinstance(message.content, list):
                yield from message.content

    def to_messages(self) -> list[dict[str, Any]]:
        """The bare message list, as plain dicts without unset keys."""
        messages: list[dict[str, Any]] = _MESSAGES.dump_python(self.messages, mode="json", exclude_none=True)
        return messages

    def to_messages_json(self) -> str:
        """The JSON string stored in the `conversations` column of a training dataset."""
        return json.dumps(self.to_messages(), ensure_ascii=False)

    @classmethod
    def from_messages_json(cls, text: str) -> Conversation:
        """Parse the bare-list JSON form back into a validated conversation."""
        return cls(messages=_MESSAGES.validate_json(text))


class Prediction(Record):
    """What a model said about one sample, kept whole even when it cannot be parsed."""

    sample_id: NonEmptyStr = Field(description="`VideoSample.id` this prediction is for.")
    model: NonEmptyStr = Field(description="Hub id or path of the model that produced it.")
    task: str | None = Field(default=None, description="Task or prompt template name and version.")
    raw_text: str = Field(description="The generated text exactly as decoded.")
    thinking: str | None = Field(default=None, description="Reasoning part, when the output has one.")
    answer: str | None = Field(default=None, description="Parsed answer; None when the output could not be parsed.")
    latency_s: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="Wall time spent on this sample (its share of the batch)."
    )
    num_generated_tokens: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="Tokens generated for this sample."
    )


ScoreKind = Literal[
    "physics_likert",
    "instruction_likert",
    "reward_model_yes_no",
    "approve_reject",
    "physics_rule",
    "videophy2_joint",
    "trajectory",
]


class ScoreRecord(Record):
    """A score given to one sample by one scorer."""

    sample_id: NonEmptyStr = Field(description="`VideoSample.id` this score is for.")
    score: float | None = Field(description="The score; None when the scorer could not produce one.")
    score_kind: ScoreKind = Field(description="What the score measures and on which scale.")
    model: str | None = Field(default=None, description="Model or verifier that gave the score.")
    critique: str | None = Field(default=None, description="Free-text justification or reasoning.")
    rewards: dict[str, float] = Field(
        default_factory=dict, description="Per-component rewards, e.g. {'format': 1.0, 'accuracy': 0.5}."
    )
    expected_score: float | None = Field(
        default=None,
        description="Probability-weighted score from the answer token's distribution (mean over samples).",
    )
    score_std: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="Standard deviation of the parsed scores over the samples drawn."
    )
    sample_scores: list[float | None] = Field(
        default_factory=list, description="Parsed score of each sample drawn (None where unparseable)."
    )
    probabilities: dict[str, float] = Field(
        default_factory=dict,
        description="Answer-token probabilities renormalised over the candidates, e.g. {'Yes': 0.2, 'No': 0.8}.",
    )


ADHERENCE_NOT_ASKED = "adherence: not asked"
"""The start of the critique line a joint score record carries when its adherence question could not be put (the
sample had no caption), followed by the cause in parentheses: the record's own evidence that its missing adherence
score is no answer that failed to parse, readable without the manifest it was scored from."""


class ItemError(Record):
    """A failure on one item of a batch job; the job records it and goes on."""

    sample_id: NonEmptyStr = Field(description="`VideoSample.id` (or row identifier) that failed.")
    stage: NonEmptyStr = Field(description="Job that failed on it, e.g. 'validate' or 'infer'.")
    error_type: NonEmptyStr = Field(description="Exception class or error category.")
    message: str = Field(description="Human-readable cause, naming the file or field when known.")
    details: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="Context to fix the item: e.g. the manifest line number and the original row.",
    )


RECORD_TYPES: dict[str, type[Record]] = {
    "video-sample": VideoSample,
    "conversation": Conversation,
    "prediction": Prediction,
    "score": ScoreRecord,
    "item-error": ItemError,
}
"""Record types by the name the command line uses for them."""
