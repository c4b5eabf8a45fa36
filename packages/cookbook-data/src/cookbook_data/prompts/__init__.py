"""Prompt templates as data: YAML files with a ``system_prompt`` and a ``user_prompt``.

The shipped files hold the exact texts the published Cosmos recipes were trained and evaluated with; a
fine-tuned checkpoint must see byte for byte what it was trained on, so they are never edited in place — a
changed prompt is a new file. A template's version is the hash of its file, so every record names the
exact text it was produced with. Users may pass their own YAML file wherever a shipped name is accepted.

A template may hold placeholders, ``{name}`` with ``name`` an identifier (``{question}``, ``{options}``),
filled per sample by :meth:`PromptTemplate.render`. Only that exact form is a placeholder: other braces
(JSON examples, ``{ }``) are plain text, and the published texts contain no braces at all.
"""

from __future__ import annotations

import hashlib
import re
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

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""A placeholder in a template text: ``{question}``."""


def _placeholders(text: str | None) -> set[str]:
    return set(PLACEHOLDER.findall(text)) if text else set()


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

    @property
    def placeholders(self) -> frozenset[str]:
        """Names of the ``{name}`` placeholders in the system and user prompts."""
        return frozenset(_placeholders(self.system_prompt) | _placeholders(self.user_prompt))

    def render(self, **values: str) -> PromptTemplate:
        """The template with each ``{name}`` replaced by ``values[name]`` (same name and version).

        The values must match the placeholders exactly: a placeholder left without a value, or a value
        the template has no place for, is an error naming the template, so a question can never be lost.
        Values are inserted as they are (braces in a value are not read as placeholders).
        """
        missing = sorted(self.placeholders - values.keys())
        unused = sorted(values.keys() - self.placeholders)
        if missing or unused:
            problems = []
            if missing:
                problems.append(f"no value for {', '.join('{' + name + '}' for name in missing)}")
            if unused:
                problems.append(f"no placeholder for {', '.join('{' + name + '}' for name in unused)}")
            raise ValueError(f"prompt {self.id}: {'; '.join(problems)}")
        if not values:
            return self

        def fill(text: str) -> str:
            return PLACEHOLDER.sub(lambda match: values[match.group(1)], text)

        return self.model_copy(
            update={
                "system_prompt": None if self.system_prompt is None else fill(self.system_prompt),
                "user_prompt": fill(self.user_prompt),
            }
        )

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


def template_file(name_or_path: str | Path) -> Path | None:
    """The file a user's template is read from, or None when ``name_or_path`` names a shipped template (a folder
    of that name in the working directory does not hide it)."""
    path = Path(name_or_path)
    return path if path.suffix in {".yaml", ".yml"} or path.is_file() else None


def load_prompt(name_or_path: str | Path) -> PromptTemplate:
    """A shipped template by name, or a user's YAML file by path."""
    path = template_file(name_or_path)
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such prompt template file")
        return _parse(path.stem, str(path), path.read_bytes())
    name = str(name_or_path)
    if name not in shipped_prompts():
        raise ValueError(f"unknown prompt {name!r}; shipped prompts: {', '.join(shipped_prompts())}")
    data = resources.files(__name__).joinpath(f"{name}.yaml").read_bytes()
    return _parse(name, f"{name}.yaml", data)
