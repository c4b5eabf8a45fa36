"""Check that a package's light modules stay light: run by `nox -s boundaries`.

For ``cookbook-<pkg>`` it imports, each in a fresh interpreter, the package itself, its CLI and every
config or schema module, then runs ``cookbook-<pkg> --help``, and fails if any of them left a heavy module
(torch, transformers, vllm, ...) in ``sys.modules``. It prints how long ``--help`` took.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("torch", "torchvision", "transformers", "vllm", "cosmos_rl", "cv2", "decord", "av", "datasets")

PROBE = """
import importlib, json, sys
target, heavy_names = sys.argv[1], set(json.loads(sys.argv[2]))
if target.endswith(":--help"):
    module = importlib.import_module(target.split(":")[0])
    sys.argv = [module.__name__, "--help"]
    try:
        module.main()
    except SystemExit:
        pass
else:
    importlib.import_module(target)
heavy = sorted({name.split(".")[0] for name in sys.modules} & heavy_names)
print(json.dumps(heavy))
"""


CONFIG_CLASS = re.compile(r"^class \w+(Config|Settings)\(", re.MULTILINE)


def light_modules(package: str) -> list[str]:
    """The package, its CLI, its schema modules and every module defining a config or settings class."""
    import_name = package.replace("-", "_")
    root = Path("packages") / package / "src" / import_name
    names = [import_name, f"{import_name}.cli"]
    for path in sorted(root.rglob("*.py")):
        if "config" in path.stem or path.stem in {"schemas", "clikit"} or CONFIG_CLASS.search(path.read_text()):
            dotted = ".".join(path.relative_to(root.parent).with_suffix("").parts)
            names.append(dotted)
    return names


def heavy_after(target: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, target, json.dumps(HEAVY)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{target}: import failed:\n{result.stderr}")
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


def main(package: str) -> int:
    failures = 0
    targets = [*light_modules(package), f"{package.replace('-', '_')}.cli:--help"]
    for target in targets:
        start = time.perf_counter()
        heavy = heavy_after(target)
        elapsed = time.perf_counter() - start
        status = "ok" if not heavy else f"FAIL: imports {', '.join(heavy)}"
        print(f"{target:45s} {elapsed:5.2f} s  {status}")
        failures += bool(heavy)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
