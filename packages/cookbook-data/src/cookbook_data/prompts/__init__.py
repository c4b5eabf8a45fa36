"""Prompt templates as data: YAML files with a ``system_prompt`` and a ``user_prompt``.

The shipped files hold the exact texts the published Cosmos recipes were trained and evaluated with; a
fine-tuned checkpoint must see byte for byte what it was trained on, so they are never edited in place — a
changed prompt is a new file. A template's version is the hash of its file, so every record names the
exact text it was produced with. Users may pass their own YAML file wherever a shipped name is accepted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import yaml
from pydantic import Field, ValidationError

from cookbook_data.schemas import (
    Conversation,
    ImagePart,
    Strict,
    SystemMessage,
    TextPart,
    UserMessage,
    VideoPart,
    describe_validation_error,
)


class PromptTemplate(Strict):
    """A system prompt (optional) and a user prompt, with the name and version they were loaded under."""

    name: str = Field(description="Shipped name, or the file stem of a user template.")
    version: str = Field(description="First 12 hex digits of the SHA-256 of the template file.")
    system_prompt: str | None = Field(default=None, description="System turn; None for no system turn.")
    user_prompt: str = Field(min_length=1, description="Text placed after the video in the user turn.")

    @property
    def id(self) -> str:
        """``name@version``, the form records carry."""
        return f"{self.name}@{self.version}"

    def conversation(self, media: Sequence[ImagePart | VideoPart]) -> Conversation:
        """The prompt around ``media``: system turn (if any), then a user turn with the media before the text,
        the order the Cosmos Reason checkpoints were trained with."""
        messages: list[SystemMessage | UserMessage] = []
        if self.system_prompt is not None:
            messages.append(SystemMessage(content=self.system_prompt))
        messages.append(UserMessage(content=[*media, TextPart(text=self.user_prompt)]))
        return Conversation(messages=list(messages))


class _TemplateFile(Strict):
    system_prompt: str | None = None
    user_prompt: str = Field(min_length=1)


def shipped_prompts() -> list[str]:
    """Names of the templates shipped with the package."""
    folder = resources.files(__name__)
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def _parse(name: str, source: str, data: bytes) -> PromptTemplate:
    try:
        fields = _TemplateFile.model_validate(yaml.safe_load(data))
    except yaml.YAMLError as error:
        raise ValueError(f"{source}: not valid YAML: {error}") from None
    except ValidationError as error:
        raise ValueError(f"{source}: not a prompt template: {describe_validation_error(error)}") from None
    version = hashlib.sha256(data).hexdigest()[:12]
    return PromptTemplate(name=name, version=version, **fields.model_dump())


def load_prompt(name_or_path: str | Path) -> PromptTemplate:
    """A shipped template by name, or a user's YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such prompt template file")
        return _parse(path.stem, str(path), path.read_bytes())
    name = str(name_or_path)
    if name not in shipped_prompts():
        raise ValueError(f"unknown prompt {name!r}; shipped prompts: {', '.join(shipped_prompts())}")
    data = resources.files(__name__).joinpath(f"{name}.yaml").read_bytes()
    return _parse(name, f"{name}.yaml", data)
