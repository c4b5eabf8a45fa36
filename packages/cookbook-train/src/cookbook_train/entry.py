"""The script cosmos-rl runs, as ``cosmos-rl --config run.toml cookbook_train.entry``.

The same module runs as the controller, every policy replica and every rollout replica (cosmos-rl tells them
apart by ``COSMOS_ROLE``). Each reads the recipe embedded under ``[custom.cookbook]`` of the TOML it is given
with ``--config`` and hands cosmos-rl the dataset, the data packer and the reward functions for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> None:
    from cosmos_rl.dispatcher.data.packer import worker_entry_parser
    from cosmos_rl.launcher.worker_entry import main as launch_worker

    from cookbook_train.plugin import read_embedded_config, worker_kwargs

    args, _ = worker_entry_parser().parse_known_args(None if argv is None else list(argv))
    if args.config is None:
        raise SystemExit("cookbook_train.entry: needs --config <cosmos-rl TOML rendered by cookbook-train>")
    config = read_embedded_config(Path(args.config))
    launch_worker(args=args, **worker_kwargs(config))


if __name__ == "__main__":
    main()
