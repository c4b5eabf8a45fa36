"""Our recipe rendered as a complete cosmos-rl TOML, and checked by cosmos-rl's own config classes.

cosmos-rl's pydantic models ignore keys they do not know, so a misspelt key would silently fall back to a
default; and some defaults are wrong for us (``tp_size`` 2, ``train.compile`` true). So the rendering

- writes every parallelism key of the policy and the rollout explicitly,
- sets ``train.compile = false`` (torch.compile of the Qwen-VL models is not supported) and the rollout's sampling
  temperature equal to the trainer's,
- embeds the recipe itself under ``[custom.cookbook]``, where the entry script reads it on every replica,

and :func:`validate_rendered` then refuses any key cosmos-rl's models do not declare (naming it), re-checks those
invariants after ``cosmos.extra`` was applied, and builds ``cosmos_rl.policy.config.Config`` from the result.
"""

from __future__ import annotations

import copy
import math
import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from cookbook_data.schemas import describe_validation_error
from cookbook_train.config import GRPOConfig, LrSchedule, Parallelism, TrainConfig

COSMOS_TOML = "cosmos-rl.toml"
"""Name of the rendered file in the run folder."""
CUSTOM_KEY = "cookbook"
"""Table under ``[custom]`` holding the recipe."""
PLANNED_STEPS = "planned_steps"
"""Key under ``[custom]`` holding the optimizer steps the plan counted, which a resumed run's plan compares with its
own (cosmos-rl keeps a checkpoint's step count on resume)."""
PARALLELISM_KEYS = ("n_init_replicas", "tp_size", "dp_shard_size", "dp_replicate_size", "cp_size", "pp_size")
"""Keys written explicitly in ``[policy.parallelism]`` and ``[rollout.parallelism]``."""
DECAY_TYPES: dict[LrSchedule, str] = {"constant": "none", "linear": "linear", "cosine": "cosine"}


class RenderError(ValueError):
    """The recipe does not make a cosmos-rl config that cosmos-rl accepts as we mean it."""


def _parallelism(layout: Parallelism) -> dict[str, int]:
    values = (layout.replicas, layout.tp, layout.dp_shard, layout.dp_replicate, layout.cp, layout.pp)
    return dict(zip(PARALLELISM_KEYS, values, strict=True))


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in nested tables, creating the tables on the way."""
    *parents, leaf = key.split(".")
    table = data
    for parent in parents:
        table = table.setdefault(parent, {})
        if not isinstance(table, dict):
            raise RenderError(f"cosmos.extra: {key!r} goes through {parent!r}, which is a value, not a table")
    table[leaf] = value


def dotted_leaves(tables: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c.d": 2}`` -> ``{"a.b": 1, "c.d": 2}``.

    TOML reads an unquoted ``validation.batch_size = 4`` (and ``--set cosmos.extra.validation.batch_size=4``) as
    nested tables; setting the outer table whole would drop every key the render put in it, so ``cosmos.extra`` is
    applied leaf by leaf.
    """
    leaves: dict[str, Any] = {}
    for key, value in tables.items():
        if isinstance(value, Mapping):
            leaves |= dotted_leaves(value, f"{prefix}{key}.")
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


def _batch_per_replica(config: TrainConfig) -> int:
    """cosmos-rl's ``train_batch_per_replica``: per replica for GRPO (the controller shares it among the ranks),
    but per data-parallel rank for SFT (every rank's data loader reads that many samples)."""
    if isinstance(config, GRPOConfig):
        return config.batch_size
    return config.batch_size // config.cosmos.policy.data_parallel()


def _train_policy(config: TrainConfig) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "type": config.kind,
        "mini_batch": config.mini_batch,
        "dataset": {"name": str(config.dataset.absolute()), "split": [config.train_split]},
        "dataloader_shuffle": True,
        "dataloader_seed": config.seed,
    }
    if isinstance(config, GRPOConfig):
        policy |= {
            "temperature": config.temperature,
            "kl_beta": config.kl_beta,
            "epsilon_low": config.epsilon_low,
            "epsilon_high": config.epsilon_high,
        }
    else:
        policy["conversation_column_name"] = "conversations"
    return policy


def _rollout(config: TrainConfig) -> dict[str, Any]:
    rollout: dict[str, Any] = {"parallelism": _parallelism(config.cosmos.rollout)}
    if isinstance(config, GRPOConfig):
        rollout |= {
            "backend": config.cosmos.rollout_backend,
            "n_generation": config.num_generations,
            "max_response_length": config.max_response_length,
            "batch_size": config.cosmos.rollout_batch_size,
            "gpu_memory_utilization": config.cosmos.gpu_memory_utilization,
            "enforce_eager": True,
            "sampling_config": {
                "temperature": config.temperature,
                "top_p": config.top_p,
                "top_k": config.top_k if config.top_k is not None else -1,
            },
        }
    return rollout


def render(config: TrainConfig) -> dict[str, Any]:
    """The cosmos-rl config (as TOML tables) for ``config``; :func:`validate_rendered` checks it."""
    train: dict[str, Any] = {
        "output_dir": str((config.output_dir / "cosmos").absolute()),
        "resume": config.resume,
        "epoch": config.epochs,
        "train_batch_per_replica": _batch_per_replica(config),
        "optm_lr": config.lr,
        "optm_weight_decay": config.weight_decay,
        "optm_warmup_steps": config.warmup_steps,
        "optm_decay_type": DECAY_TYPES[config.lr_schedule],
        "optm_grad_norm_clip": config.grad_norm_clip,
        "compile": False,
        "param_dtype": config.cosmos.param_dtype,
        "master_dtype": "float32",
        "seed": config.seed,
        "train_policy": _train_policy(config),
        "ckpt": {
            "enable_checkpoint": True,
            "save_freq": config.save_every,
            "max_keep": config.keep_checkpoints,
            "export_safetensors": True,
        },
    }
    if config.max_steps is not None:
        train["max_num_steps"] = config.max_steps
    policy: dict[str, Any] = {
        "model_name_or_path": config.model,
        "model_max_length": config.max_length,
        "model_gradient_checkpointing": config.gradient_checkpointing,
        "parallelism": _parallelism(config.cosmos.policy),
    }
    if config.lora is not None:
        policy["lora"] = {
            "r": config.lora.rank,
            "lora_alpha": config.lora.alpha,
            "lora_dropout": config.lora.dropout,
            "target_modules": config.lora.target_modules,
        }
    validation: dict[str, Any] = {"enable": config.validate_every is not None}
    if config.validate_every is not None:
        validation |= {
            "freq": config.validate_every,
            "dataset": {"name": str(config.dataset.absolute()), "split": [config.val_split]},
        }
    rendered: dict[str, Any] = {
        "mode": "disaggregated",
        "train": train,
        "policy": policy,
        "rollout": _rollout(config),
        "validation": validation,
        "logging": {
            "logger": list(config.cosmos.loggers),
            "project_name": config.cosmos.project,
            "experiment_name": config.output_dir.absolute().name,
        },
        "custom": {CUSTOM_KEY: config.with_absolute_paths().model_dump(mode="json", exclude_none=True)},
    }
    for key, value in dotted_leaves(config.cosmos.extra).items():
        set_dotted(rendered, key, copy.deepcopy(value))
    return rendered


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation allows (through Optional, unions, Annotated and lists)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType, Annotated, list):
        args = get_args(annotation)[:1] if origin is Annotated else get_args(annotation)
        return [model for arg in args for model in _models_in(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _pick(models: list[type[BaseModel]], value: Mapping[str, Any]) -> list[type[BaseModel]]:
    """The union members a table can be: those whose ``type`` literal it names, when it names one."""
    if len(models) < 2 or "type" not in value:
        return models
    chosen = []
    for model in models:
        field = model.model_fields.get("type")
        if (
            field is not None
            and get_origin(field.annotation) is Literal
            and value["type"] in get_args(field.annotation)
        ):
            chosen.append(model)
    return chosen or models


def unknown_keys(data: Mapping[str, Any], model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted paths of the keys in ``data`` that ``model`` (recursively) does not declare.

    Tables under a free-form field (a ``dict`` such as ``custom``) are not looked into.
    """
    found: list[str] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        field = model.model_fields.get(key)
        if field is None:
            found.append(path)
            continue
        models = _models_in(field.annotation)
        if not models:
            continue
        items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            if not isinstance(item, Mapping):
                continue
            where = f"{path}." if index is None else f"{path}.{index}."
            candidates = _pick(models, item)
            if len(candidates) == 1:
                found.extend(unknown_keys(item, candidates[0], where))
            else:
                declared = set().union(*(candidate.model_fields for candidate in candidates))
                found.extend(f"{where}{name}" for name in item if name not in declared)
    return found


def check_invariants(rendered: Mapping[str, Any]) -> None:
    """What must hold whatever ``cosmos.extra`` says: explicit parallelism, no torch.compile, equal temperatures."""
    tables = ("policy", "rollout")
    for table in tables:
        layout = rendered.get(table, {}).get("parallelism", {})
        missing = [key for key in PARALLELISM_KEYS if key not in layout]
        if missing:
            raise RenderError(f"{table}.parallelism: {', '.join(missing)} must be set explicitly")
    train = rendered.get("train", {})
    if train.get("compile", True):
        raise RenderError("train.compile must be false: torch.compile is not supported for the Qwen-VL models")
    policy = train.get("train_policy", {})
    if policy.get("type") == "grpo":
        trainer = policy.get("temperature")
        rollout = rendered.get("rollout", {}).get("sampling_config", {}).get("temperature")
        if trainer != rollout:
            raise RenderError(
                f"train.train_policy.temperature ({trainer}) and rollout.sampling_config.temperature ({rollout}) "
                "must be equal, or the importance ratios are computed for another distribution than the one sampled"
            )


def validate_rendered(rendered: Mapping[str, Any]) -> Any:
    """Check a rendered config and build cosmos-rl's ``Config`` from (a copy of) it; raises :class:`RenderError`.

    Imports cosmos-rl (heavy): call it where cosmos-rl is about to be used, not at import time.
    """
    from cosmos_rl.policy.config import Config

    unknown = unknown_keys(rendered, Config)
    if unknown:
        raise RenderError(f"keys cosmos-rl does not know (it would ignore them): {', '.join(unknown)}")
    check_invariants(rendered)
    try:
        return Config.from_dict(copy.deepcopy(dict(rendered)))
    except ValidationError as error:
        raise RenderError(f"cosmos-rl rejects the config: {describe_validation_error(error)}") from None
    except (AssertionError, ValueError, TypeError) as error:
        raise RenderError(f"cosmos-rl rejects the config: {error}") from None


_TOML_ESCAPES = {
    ord("\\"): "\\\\",
    ord('"'): '\\"',
    **{code: f"\\u{code:04x}" for code in (*range(0x20), 0x7F)},
    **{
        ord(char): escape
        for char, escape in (("\b", "\\b"), ("\t", "\\t"), ("\n", "\\n"), ("\f", "\\f"), ("\r", "\\r"))
    },
}
"""Backslash, quote and the control characters TOML forbids raw in a basic string, with their escapes: the short
ones where TOML has one (the ``toml`` package's reader misreads a ``\\u`` escape followed by a literal ``\\u``
in one string, so the common ones avoid it)."""


def _basic_string(text: str) -> str:
    """``text`` as a TOML basic string, every character other than those of :data:`_TOML_ESCAPES` as it is.

    The ``toml`` package's own writer turns some characters into other text (a no-break space into the letters
    ``xa0``, ESC into ``x1b``) and writes a backslash before ``x`` so that its reader, cosmos-rl's, refuses the file."""
    return '"' + text.translate(_TOML_ESCAPES) + '"'


def to_toml(rendered: Mapping[str, Any]) -> str:
    """The rendered config as TOML text, in the form ``cosmos-rl --config`` reads (it reads with the ``toml``
    package, so that package writes the text; only its strings are written by :func:`_basic_string`). Read back
    with that reader before it is written, so what cosmos-rl would misread is refused here, not at its start."""
    import toml

    encoder = toml.TomlEncoder()
    encoder.dump_funcs[str] = _basic_string
    text: str = toml.dumps(dict(rendered), encoder=encoder)
    reader = "cosmos-rl's TOML reader (the toml package)"
    try:
        read_back = toml.loads(text)
    except toml.TomlDecodeError as error:
        raise RenderError(f"{reader} cannot read the rendered config: {error}") from None
    written, read = dotted_leaves(rendered), dotted_leaves(read_back)
    if differing := [key for key in written.keys() | read.keys() if not _same(written.get(key), read.get(key))]:
        raise RenderError(
            f"{reader} would read {min(differing)} otherwise than it was rendered: it mishandles some characters "
            "(a control character such as ESC followed by a literal \\u, a no-break space in a key)"
        )
    return text


def _same(written: Any, read: Any) -> bool:
    """Whether a value reads back as it was written (NaN as NaN, within lists and tables too)."""
    if isinstance(written, float) and isinstance(read, float) and math.isnan(written) and math.isnan(read):
        return True
    if isinstance(written, list) and isinstance(read, list):
        return len(written) == len(read) and all(map(_same, written, read))
    if isinstance(written, Mapping) and isinstance(read, Mapping):
        return written.keys() == read.keys() and all(_same(written[key], read[key]) for key in written)
    return bool(written == read)
