import json
from typing import Self

import pytest
from pydantic import BaseModel, ValidationError, model_validator

from cookbook_data.schemas import (
    RECORD_TYPES,
    AssistantMessage,
    Conversation,
    ItemError,
    Prediction,
    ScoreRecord,
    Strict,
    SystemMessage,
    TextPart,
    UserMessage,
    VideoPart,
    VideoSample,
    describe_validation_error,
)

EXAMPLES: list[BaseModel] = [
    VideoSample(
        id="clip-1",
        path="/data/clip-1.mp4",
        url="https://example.org/clip-1.mp4",
        caption="A ball bounces on the floor.",
        labels={"pc": 4, "sa": 5, "physics_rules_followed": ["gravity"]},
        metadata={"source": "videophy2_train", "is_hard": False},
    ),
    Conversation(
        messages=[
            SystemMessage(content="You are a helpful assistant."),
            UserMessage(
                content=[
                    VideoPart(video="/data/clip-1.mp4", fps=4, total_pixels=8192 * 28 * 28),
                    TextPart(text="Does this video adhere to the physical laws?"),
                ]
            ),
            AssistantMessage(content="<answer>\n4\n</answer>"),
        ]
    ),
    Prediction(
        sample_id="clip-1",
        model="nvidia/Cosmos-Reason1-7B",
        task="critic/v1",
        raw_text="<think>ok</think>\n\n<answer>4</answer>",
        thinking="ok",
        answer="4",
        latency_s=0.5,
        num_generated_tokens=12,
    ),
    ScoreRecord(
        sample_id="clip-1",
        score=3.7,
        score_kind="physics_likert",
        model="nvidia/Cosmos-Reason1-7B",
        critique="The ball hovers.",
        rewards={"format": 1.0, "accuracy": 0.5},
    ),
    ItemError(sample_id="clip-2", stage="validate", error_type="DecodeError", message="/data/clip-2.mp4: moov"),
]


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).__name__)
def test_records_round_trip_through_json(record: BaseModel) -> None:
    again = type(record).model_validate_json(record.model_dump_json())
    assert again == record
    assert json.loads(record.model_dump_json())["schema_version"] == 1


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).__name__)
def test_unknown_fields_are_rejected_by_name(record: BaseModel) -> None:
    data = json.loads(record.model_dump_json())
    data["scroe"] = 1
    with pytest.raises(ValidationError, match="scroe") as info:
        type(record).model_validate(data)
    assert info.value.errors()[0]["type"] == "extra_forbidden"


def test_unknown_field_inside_a_nested_part_is_named_with_its_location() -> None:
    data = {"messages": [{"role": "user", "content": [{"type": "video", "video": "/a.mp4", "fsp": 2}]}]}
    with pytest.raises(ValidationError) as info:
        Conversation.model_validate(data)
    locations = [error["loc"] for error in info.value.errors() if error["type"] == "extra_forbidden"]
    assert locations == [("messages", 0, "user", "content", "parts", 0, "video", "fsp")]
    assert len(info.value.errors()) == 1


def test_a_newer_schema_version_is_refused() -> None:
    with pytest.raises(ValidationError, match="schema_version"):
        ItemError.model_validate(
            {"schema_version": 2, "sample_id": "a", "stage": "s", "error_type": "E", "message": ""}
        )


def test_every_record_type_is_listed_for_the_command_line() -> None:
    assert {type(r) for r in EXAMPLES} == set(RECORD_TYPES.values())


def test_video_sample_needs_a_path_or_a_url() -> None:
    with pytest.raises(ValidationError, match="needs a `path` or a `url`"):
        VideoSample(id="x")
    assert VideoSample(id="x", url="https://example.org/x.mp4").path is None


def test_empty_ids_are_refused() -> None:
    with pytest.raises(ValidationError, match="sample_id"):
        Prediction(sample_id="", model="m", raw_text="")


def test_video_part_takes_fps_or_nframes_not_both() -> None:
    with pytest.raises(ValidationError, match="not fps and nframes"):
        VideoPart(video="/a.mp4", fps=2, nframes=8)
    with pytest.raises(ValidationError, match="greater than 0"):
        VideoPart(video="/a.mp4", max_pixels=0)


def test_score_kind_is_a_closed_set() -> None:
    with pytest.raises(ValidationError, match="score_kind"):
        ScoreRecord.model_validate({"sample_id": "a", "score": 1.0, "score_kind": "vibes"})


def test_conversation_serialises_to_the_bare_message_list_cosmos_rl_reads() -> None:
    conversation = EXAMPLES[1]
    assert isinstance(conversation, Conversation)
    assert json.loads(conversation.to_messages_json()) == [
        {"role": "system", "content": "You are a helpful assistant."},
        {
            "role": "user",
            "content": [
                {"type": "video", "video": "/data/clip-1.mp4", "fps": 4.0, "total_pixels": 6422528},
                {"type": "text", "text": "Does this video adhere to the physical laws?"},
            ],
        },
        {"role": "assistant", "content": "<answer>\n4\n</answer>"},
    ]
    assert Conversation.from_messages_json(conversation.to_messages_json()) == conversation


def test_conversation_parses_the_published_training_row() -> None:
    row = (
        '[{"role":"system","content":"<system prompt>"},'
        '{"role":"user","content":[{"type":"video","video":"/abs/clip.mp4","fps":1,"max_pixels":81920},'
        '{"type":"text","text":"Does this video adhere to the physical laws?"}]},'
        '{"role":"assistant","content":"<answer>\\n4\\n</answer>"}]'
    )
    conversation = Conversation.from_messages_json(row)
    user = conversation.messages[1]
    assert isinstance(user, UserMessage)
    assert isinstance(user.content, list)
    video = user.content[0]
    assert isinstance(video, VideoPart)
    assert (video.video, video.fps, video.max_pixels) == ("/abs/clip.mp4", 1, 81920)
    assert json.loads(conversation.to_messages_json()) == json.loads(row)


def test_assignment_is_validated() -> None:
    sample = VideoSample(id="a", path="/a.mp4")
    with pytest.raises(ValidationError):
        sample.id = ""


class _Span(Strict):
    start: int
    end: int

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end < self.start:
            raise ValueError(f"end {self.end} comes before start {self.start}")
        return self


def test_a_check_of_the_whole_record_is_described_by_its_own_message_alone() -> None:
    with pytest.raises(ValidationError) as info:
        _Span(start=3, end=1)
    assert describe_validation_error(info.value) == "end 1 comes before start 3"


def test_field_errors_are_described_with_their_location() -> None:
    with pytest.raises(ValidationError) as info:
        _Span.model_validate({"start": "x"})
    assert describe_validation_error(info.value) == (
        "start: Input should be a valid integer, unable to parse string as an integer; end: Field required"
    )
