"""Model inputs for training, built exactly as inference builds them.

Every batch goes through :func:`cookbook_infer.backends.transformers.model_inputs` — the frames chosen by the
vision settings stored in each video part, resized by the same code, the same processor call — so a trained model
sees at training time what it will see at inference. The training target is passed as the prefix of the assistant
turn, i.e. appended to exactly the generation prompt inference uses; only its tokens carry labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cookbook_data.schemas import AssistantMessage, Conversation
from cookbook_infer.backends.transformers import chat_prompt, model_inputs
from cookbook_train.data import parse_conversation, split_target

IGNORE_INDEX = -100
"""Label of the positions the loss skips."""


def completion_text(processor: Any, prompt: Conversation, target: str) -> str:
    """The text that follows the generation prompt in the rendered conversation: the target, the end of the turn
    and what the chat template puts after it (a newline for the Qwen templates)."""
    full = Conversation(messages=[*prompt.messages, AssistantMessage(content=target)])
    rendered: str = processor.apply_chat_template(full.to_messages(), tokenize=False)
    opening: str = processor.apply_chat_template(prompt.to_messages(), tokenize=False, add_generation_prompt=True)
    if rendered.startswith(opening) and target in rendered[len(opening) :]:
        return rendered[len(opening) :]
    return target + str(processor.tokenizer.eos_token)


def text_tokens(processor: Any, conversation: Conversation) -> int:
    """Tokens of a conversation's chat-template text as the model input holds it (the generation prompt, then the
    final assistant turn if there is one), each video's placeholder counted as one token."""
    prompt, target = split_target(conversation)
    text = chat_prompt(processor, prompt) + ("" if target is None else completion_text(processor, prompt, target))
    return len(processor.tokenizer(text, add_special_tokens=False)["input_ids"])


def sft_batch(
    processor: Any,
    model_type: str,
    conversations: Sequence[Conversation],
    *,
    max_length: int | None = None,
    ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Inputs and labels for conversations ending in an assistant turn: labels only on that turn's text and its
    end-of-turn token (what cosmos-rl's data packers label too).

    Rows are padded on the left (as for generation), so each row's target is at its end.
    """
    import torch

    prompts, completions = [], []
    for index, conversation in enumerate(conversations):
        prompt, target = split_target(conversation)
        if target is None:
            raise ValueError(f"sample {_name(ids, index)}: no final assistant turn to train on")
        prompts.append(prompt)
        completions.append(completion_text(processor, prompt, target))
    if processor.tokenizer.padding_side != "left":
        raise ValueError("the processor must pad on the left (load it with cookbook_infer's load_pretrained)")
    inputs = model_inputs(processor, model_type, prompts, completions)
    input_ids = inputs["input_ids"]
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for row, completion in enumerate(completions):
        tokens = processor.tokenizer(completion, add_special_tokens=False)["input_ids"]
        labelled = processor.tokenizer(completion.rstrip(), add_special_tokens=False)["input_ids"]
        if input_ids[row, -len(tokens) :].tolist() != tokens or tokens[: len(labelled)] != labelled:
            raise ValueError(
                f"sample {_name(ids, row)}: the target's tokens change when joined to the prompt; "
                "the chat template and tokenizer disagree at the start or the end of the assistant turn"
            )
        start = input_ids.shape[1] - len(tokens)
        labels[row, start : start + len(labelled)] = input_ids[row, start : start + len(labelled)]
    if max_length is not None:
        for row, length in enumerate(sequence_lengths(inputs)):
            if length > max_length:
                raise ValueError(
                    f"sample {_name(ids, row)}: {length} tokens (video included) exceed max_length {max_length}; "
                    "raise max_length or rebuild the dataset with fewer frames or pixels"
                )
    batch = dict(inputs)
    batch["labels"] = labels
    return batch


def sequence_lengths(inputs: Any) -> list[int]:
    """Tokens of each row of a batch of model inputs, videos included, padding not."""
    lengths: list[int] = inputs["attention_mask"].sum(dim=1).tolist()
    return lengths


def _name(ids: Sequence[str] | None, index: int) -> str:
    return repr(ids[index]) if ids is not None else f"#{index}"


class SFTCollator:
    """Dataset rows (``id``, ``conversations``, ``reference``) to a training batch; the TRL trainer's collator."""

    def __init__(self, processor: Any, model_type: str, max_length: int | None = None) -> None:
        self.processor = processor
        self.model_type = model_type
        self.max_length = max_length

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        conversations = [parse_conversation(row["conversations"]) for row in rows]
        ids = [str(row.get("id", index)) for index, row in enumerate(rows)]
        return sft_batch(self.processor, self.model_type, conversations, max_length=self.max_length, ids=ids)
