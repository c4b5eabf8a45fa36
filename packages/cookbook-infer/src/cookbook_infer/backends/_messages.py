"""Our conversations in the forms other engines take: the video parts a prompt refers to, the vision settings
they carry, and OpenAI chat-completion messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cookbook_data.schemas import Conversation, ImagePart, TextPart, VideoPart

URL_SCHEMES = ("http://", "https://", "file://", "data:")
"""Media locations passed to a server unchanged; anything else is a local path."""


def media_url(location: str) -> str:
    """A URL a server can fetch: URLs as they are, local paths as ``file://`` URLs of the absolute path
    (percent-encoded; relative paths are taken from the current directory, as the frame sampler opens them)."""
    if location.startswith(URL_SCHEMES):
        return location
    return Path(location).resolve().as_uri()


def vision_kwargs(part: VideoPart) -> dict[str, Any]:
    """The vision settings stored in a video part (only those set), under their qwen-vl-utils names."""
    settings: dict[str, Any] = part.model_dump(exclude={"type", "video"}, exclude_none=True)
    return settings


def _openai_part(part: TextPart | ImagePart | VideoPart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, VideoPart):
        return {"type": "video_url", "video_url": {"url": media_url(part.video)}}
    if part.min_pixels is not None or part.max_pixels is not None:
        raise ValueError(
            f"{part.image}: image pixel bounds cannot be sent in an OpenAI chat message; "
            "leave them unset to use the server's image size"
        )
    return {"type": "image_url", "image_url": {"url": media_url(part.image)}}


def openai_messages(conversation: Conversation) -> list[dict[str, Any]]:
    """Chat-completion messages: text stays text, media parts become ``video_url`` / ``image_url`` parts
    (the form ``vllm serve`` accepts; ``file://`` URLs need its ``--allowed-local-media-path``)."""
    messages: list[dict[str, Any]] = []
    for message in conversation.messages:
        content: str | list[dict[str, Any]]
        if isinstance(message.content, str):
            content = message.content
        else:
            content = [_openai_part(part) for part in message.content]
        messages.append({"role": message.role, "content": content})
    return messages


def chat_prompt(processor: Any, conversation: Conversation, prefix: str = "") -> str:
    """The model's chat-template text for a conversation, ending in the assistant turn's opening, followed by
    ``prefix``: what the assistant has already written when a scorer asks for its next token."""
    prompt: str = processor.apply_chat_template(conversation.to_messages(), tokenize=False, add_generation_prompt=True)
    return prompt + prefix
