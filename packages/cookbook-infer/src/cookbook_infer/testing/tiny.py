"""Tiny random Cosmos Reason checkpoints, built offline, for tests and for users' CI.

Real checkpoints are gigabytes and cannot be downloaded everywhere. These have the same architectures
(Qwen2.5-VL for Cosmos-Reason1, Qwen3-VL for Cosmos-Reason2), a byte-level BPE tokenizer trained on the
spot with the Qwen special tokens, a chat template and real image/video processors. They are written with
``save_pretrained`` so the exact loading code used for a hub id (``AutoProcessor`` /
``AutoModelForImageTextToText.from_pretrained``) loads them too. Weights are random: outputs are noise,
but shapes, token accounting, video handling and generation are the real thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from tokenizers import Tokenizer

Arch = Literal["reason1", "reason2"]

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
"""Qwen's control tokens; never split, and skipped by ``skip_special_tokens`` decoding."""

REASONING_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")
"""Added as ordinary tokens (as in the real checkpoints) so decoded text keeps them."""

_CORPUS = (
    "You are a helpful assistant.",
    "You are a helpful video analyzer. Evaluate whether the video follows physical commonsense.",
    "Does this video adhere to the physical laws? Does the video contain any anomalies or artifacts?",
    "Object behavior, motion and forces, interactions, consistency over time.",
    "Score between 1 and 5. 1 2 3 4 5. Yes No. Approve Reject.",
    "The ball falls under gravity and bounces on the floor; the liquid flows into the glass.",
    "A white square moves across a grey background at constant velocity.",
    "Answer the question using the following format: <think> your reasoning </think> <answer> 4 </answer>",
    "0.0 0.5 1.0 1.5 2.0 2.5 3.0 seconds frames video image caption describe",
)

_TEMPLATE_REASON1 = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Qwen3-VL's template adds no default system turn; otherwise the message layout is the same.
_TEMPLATE_REASON2 = _TEMPLATE_REASON1.replace(
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}",
    "",
)


def train_tokenizer(vocab_size: int = 640) -> Tokenizer:
    """A byte-level BPE tokenizer trained on a small built-in corpus, with Qwen's special tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in REASONING_TOKENS])
    return tokenizer


def _hf_tokenizer(arch: Arch):  # type: ignore[no-untyped-def]
    from transformers import Qwen2TokenizerFast

    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=train_tokenizer(),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in {"<|endoftext|>", "<|im_end|>"}],
        padding_side="left",
        model_max_length=32768,
    )
    tokenizer.chat_template = _TEMPLATE_REASON1 if arch == "reason1" else _TEMPLATE_REASON2
    return tokenizer


def _processor(arch: Arch, tokenizer):  # type: ignore[no-untyped-def]
    """The architecture's real processor classes, with small pixel budgets so CPU tests stay fast."""
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessorFast,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    patch = 14 if arch == "reason1" else 16
    token_area = (2 * patch) ** 2  # one visual token = 2x2 merged patches
    geometry = {"patch_size": patch, "merge_size": 2, "temporal_patch_size": 2}
    image_size = {"shortest_edge": 4 * token_area, "longest_edge": 64 * token_area}
    if arch == "reason1":
        return Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessorFast(size=image_size, **geometry),
            video_processor=Qwen2VLVideoProcessor(size=image_size, **geometry),
            tokenizer=tokenizer,
            chat_template=tokenizer.chat_template,
        )
    # Qwen3-VL normalises with mean = std = 0.5 and budgets video pixels over all frames together.
    norm = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    video_size = {"shortest_edge": 8 * token_area, "longest_edge": 256 * token_area}
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessorFast(size=image_size, **geometry, **norm),
        video_processor=Qwen3VLVideoProcessor(size=video_size, fps=2, min_frames=2, max_frames=32, **geometry, **norm),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )


def _model_config(arch: Arch, tokenizer):  # type: ignore[no-untyped-def]
    """A few-hundred-thousand-parameter config of the real architecture."""
    from transformers import Qwen2_5_VLConfig, Qwen3VLConfig

    ids = {
        "image_token_id": tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        "video_token_id": tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        "vision_start_token_id": tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        "vision_end_token_id": tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    }
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": True,
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        "pad_token_id": tokenizer.pad_token_id,
    }
    if arch == "reason1":
        # head_dim 16 -> 8 rotary pairs split over (time, height, width).
        text["rope_scaling"] = {"type": "mrope", "mrope_section": [2, 3, 3]}
        vision = {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
        }
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)
    text["head_dim"] = 16
    text["rope_scaling"] = {"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True}
    vision = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": 256,
        "deepstack_visual_indexes": [0],
    }
    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)


def make_tiny_model(arch: Arch, out: str | Path, *, seed: int = 0) -> Path:
    """Build a random ``arch`` checkpoint with its tokenizer and processor and save it under ``out``.

    The result loads with ``AutoProcessor.from_pretrained(out)`` and
    ``AutoModelForImageTextToText.from_pretrained(out)``, like a hub checkpoint.
    """
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _hf_tokenizer(arch)
    processor = _processor(arch, tokenizer)
    config = _model_config(arch, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=[
            tokenizer.convert_tokens_to_ids("<|im_end|>"),
            tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        ],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
