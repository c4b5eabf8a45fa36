"""Export a trained model as a plain Hugging Face checkpoint that ``cookbook-infer`` loads like a hub id.

The export is ``save_pretrained`` of the model and of its processor into one folder. LoRA adapters are merged
into the base weights first, so the result needs neither peft nor the base checkpoint. A source is either a
model in memory (the local backend's) or a folder: a full checkpoint (cosmos-rl's ``safetensors/step_N``
exports, for instance) or a PEFT adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``, what
cosmos-rl exports with LoRA and what the local backend checkpoints), merged into ``base``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

FINAL = "final"
"""Folder of the exported checkpoint in the run folder."""
ADAPTER_CONFIG = "adapter_config.json"


def save_hf(model: Any, processor: Any, out: Path, *, dtype: str | None = None) -> Path:
    """``save_pretrained`` of ``model`` (LoRA merged into it) and ``processor`` into ``out``, its weights cast to
    ``dtype`` when given (the model is cast in place: call this when training is over).

    Training passes its compute dtype: float32 master weights under bfloat16 autocast are for the optimizer, and an
    export in float32 would be twice the size and load in float32 (``dtype="auto"``), twice the memory.
    Refuses a processor without a chat template: every consumer of the export formats prompts with it, and
    would fail only later, far from the cause.
    """
    import torch
    from peft import PeftModel

    if processor.chat_template is None:
        raise ValueError(
            f"{out}: refusing to export a processor without a chat template (apply_chat_template would fail on "
            "the export); take the processor from a checkpoint that has one"
        )
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    if dtype is not None:
        model = model.to(getattr(torch, dtype))
        for name in model.config.sub_configs:  # loading with dtype="auto" reads the text and vision parts' own
            getattr(model.config, name).dtype = dtype
    out.mkdir(parents=True, exist_ok=True)
    model.config.use_cache = True
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


def _has_processor(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("processor_config.json", "preprocessor_config.json"))


def _processor_folder(source: Path, base: str | None) -> str | None:
    """Where the export's processor comes from: ``source`` when its processor has a chat template, else ``base``.

    cosmos-rl fills ``safetensors/step_N`` with copies of only the ``*.json`` and ``*.py`` files of the starting
    model, while transformers (4.57) saves the chat template as ``chat_template.jinja``: such a folder has a
    processor, but one without its chat template.
    """
    if _has_processor(source):
        from transformers import AutoProcessor

        processor: Any = AutoProcessor.from_pretrained(str(source))  # type: ignore[no-untyped-call]
        if processor.chat_template is not None:
            return str(source)
    return base


def adapter_config(folder: Path) -> Any:
    """The peft ``LoraConfig`` of an adapter folder, read from its ``adapter_config.json`` whether peft or
    cosmos-rl wrote it.

    cosmos-rl (0.4.7) writes its own LoRA settings there: ``alpha_pattern`` and ``r_pattern`` as null when unset
    (peft 0.21 calls ``.keys()`` on them and fails), the rank patterns as ``r_pattern`` (peft's ``rank_pattern``),
    and keys of its own (``lora_names``, ``lora_path``, ``primary_adapter``), which are dropped: only the fields
    peft's ``LoraConfig`` has are passed to it.
    """
    import dataclasses

    from peft import LoraConfig

    settings = json.loads((folder / ADAPTER_CONFIG).read_text())
    if "r_pattern" in settings:
        settings["rank_pattern"] = settings.pop("r_pattern")
    for pattern in ("rank_pattern", "alpha_pattern"):
        if settings.get(pattern) is None:
            settings[pattern] = {}
    fields = {field.name for field in dataclasses.fields(LoraConfig)}
    return LoraConfig(**{key: value for key, value in settings.items() if key in fields})


def _with_adapter(model: Any, source: Path, config: Any, base: str) -> Any:
    """``model`` with the adapter of ``source`` loaded, refusing an adapter any of whose tensors loads into no module.

    peft loads adapter weights by name and skips the names it does not find: an adapter trained on another model,
    or saved under other module names, would merge as nothing (the new LoRA matrices start at zero) and export the
    base weights as if trained. No partial load is legitimate either: each tensor left over is a trained weight the
    merge would drop. The converse is legitimate: peft may wrap a targeted module the trainer did not (cosmos-rl
    adapts only ``nn.Linear`` layers, peft a convolution of the same name too), and such a module, with no weights
    in the file, keeps its zero-initialised product and merges as nothing.
    The legacy names of checkpoints that transformers renames on load (cosmos-rl writes Qwen2.5-VL's) are mapped
    as ``PeftModel.from_pretrained`` maps them.
    """
    from peft import PeftModel

    config.inference_mode = True
    peft_model = PeftModel(model, config)
    mapping = getattr(model, "_checkpoint_conversion_mapping", None) or {}
    unused = peft_model.load_adapter(str(source), "default", key_mapping=mapping).unexpected_keys
    if unused:
        raise ValueError(
            f"{source}: {len(unused)} adapter tensors match no module of {base} (e.g. {', '.join(unused[:3])}); "
            "was the adapter trained on another model, or saved under other module names?"
        )
    return peft_model


def export_checkpoint(source: Path, out: Path, *, base: str | None = None) -> Path:
    """Load ``source`` (a checkpoint folder, or an adapter folder merged into ``base``) and save it to ``out``.

    The processor comes from ``source`` when it holds one with a chat template, else from ``base``.
    """
    from cookbook_infer.backends.transformers import load_pretrained

    adapter = source / ADAPTER_CONFIG
    model: Any
    if adapter.is_file():
        config = adapter_config(source)
        base = base or config.base_model_name_or_path
        if not base:
            raise ValueError(f"{source}: a LoRA adapter without base_model_name_or_path; pass the base model")
        loaded = load_pretrained(base, processor_from=_processor_folder(source, base))
        model = _with_adapter(loaded.model, source, config, base)
    elif not (source / "config.json").is_file():
        raise FileNotFoundError(f"{source}: neither a checkpoint (config.json) nor a LoRA adapter ({ADAPTER_CONFIG})")
    elif (processor := _processor_folder(source, base)) is None:
        raise ValueError(
            f"{source}: holds no processor with a chat template (cosmos-rl does not copy chat_template.jinja); "
            "pass the base model to take it from"
        )
    else:
        loaded = load_pretrained(str(source), processor_from=processor)
        model = loaded.model
    return save_hf(model, loaded.processor, out)


_STEP = re.compile(r"^step_(\d+)$")


def latest_cosmos_export(run_dir: Path) -> Path | None:
    """The newest ``safetensors/step_N`` folder cosmos-rl exported under ``<run>/cosmos/<timestamp>/``: the last
    step of the newest launch (an earlier launch in the same folder may have reached a higher step)."""
    found: list[tuple[str, int, Path]] = []
    for folder in (run_dir / "cosmos").glob("*/safetensors/step_*"):
        match = _STEP.match(folder.name)
        if match and folder.is_dir():
            found.append((folder.parent.parent.name, int(match.group(1)), folder))
    return max(found)[2] if found else None
