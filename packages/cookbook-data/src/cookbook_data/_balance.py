"""Order-independent choices for dataset building: the train/val split, label balancing and shuffling.

Every choice here is a function of the sample ids (and a seed or salt), never of the order the manifest
lists them in or of a random generator's state, so the same ids make the same dataset on any machine, in
any order, and a manifest that grows keeps its old samples where they were.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, TypeVar

T = TypeVar("T")

Split = Literal["train", "val"]
Balance = Literal["none", "down", "up"]


def _unit(key: str) -> float:
    """A number in [0, 1) fixed by ``key``: the first 64 bits of its SHA-256."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:16], 16) / 2**64


def split_of(sample_id: str, val_fraction: float, salt: str = "") -> Split:
    """``val`` when the hash of the id (with ``salt`` when given) falls below ``val_fraction``, else ``train``.

    The hash is SHA-256 of ``sample_id``, or of ``f"{salt}:{sample_id}"``; a sample's split depends on
    nothing else, so it is the same across runs, machines, manifest orders and manifest extensions.
    """
    key = f"{salt}:{sample_id}" if salt else sample_id
    return "val" if _unit(key) < val_fraction else "train"


BALANCE_SALT = "balance"
"""Mixed into the ranking that picks which items balancing keeps or repeats. Without it that ranking would be
the shuffle's: down-sampling keeps each class's first-ranked items, the smaller a class the deeper into the
shuffle its kept items reach, and the shuffled split comes out ordered by class."""


def _rank(seed: int, sample_id: str, copy: int = 0, salt: str = "") -> str:
    """Sort key of an item: SHA-256 of the seed, copy number and id (after ``salt`` when given)."""
    key = f"{seed}:{copy}:{sample_id}"
    return hashlib.sha256((f"{salt}:{key}" if salt else key).encode()).hexdigest()


def label_counts(labels: Iterable[str]) -> dict[str, int]:
    """How many of each label, sorted numerically for numbers and alphabetically otherwise."""
    counts = Counter(labels)
    return {label: counts[label] for label in sorted(counts, key=_label_order)}


def _label_order(label: str) -> tuple[bool, int, str]:
    digits = label.isdigit()
    return (not digits, int(label) if digits else 0, label)


def balance(
    items: Sequence[T], label: Callable[[T], str], item_id: Callable[[T], str], mode: Balance, seed: int
) -> tuple[list[T], list[T]]:
    """Balance ``items`` over their labels; returns (kept, removed).

    ``down`` keeps, in each class, as many items as the smallest class has; ``up`` repeats items of each
    class until it has as many as the largest class (whole rounds first, then the remainder). Which items
    are kept or repeated follows a ranking by ``sha256(BALANCE_SALT, seed, id)``, so the result depends on the
    seed and the ids only, and is unrelated to the order :func:`shuffled` gives. ``kept`` follows the input
    order, with repeated copies right after their original. Ids must be unique.
    """
    if mode == "none" or not items:
        return list(items), []
    classes: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        classes[label(item)].append(index)
    ranked = {
        name: sorted(members, key=lambda index: _rank(seed, item_id(items[index]), salt=BALANCE_SALT))
        for name, members in classes.items()
    }
    copies = [1] * len(items)
    if mode == "down":
        target = min(len(members) for members in classes.values())
        for members in ranked.values():
            for index in members[target:]:
                copies[index] = 0
    else:
        target = max(len(members) for members in classes.values())
        for members in ranked.values():
            rounds, remainder = divmod(target - len(members), len(members))
            for position, index in enumerate(members):
                copies[index] += rounds + (1 if position < remainder else 0)
    kept = [item for item, count in zip(items, copies, strict=True) for _ in range(count)]
    removed = [item for item, count in zip(items, copies, strict=True) if count == 0]
    return kept, removed


def shuffled(items: Sequence[T], item_id: Callable[[T], str], seed: int) -> list[T]:
    """``items`` ordered by ``sha256(seed, copy number, id)``: a shuffle that ignores the input order.

    Repeated copies of one id are told apart by their copy number, so up-sampled copies spread out.
    """
    seen: Counter[str] = Counter()
    keyed = []
    for item in items:
        key = item_id(item)
        keyed.append((_rank(seed, key, seen[key]), item))
        seen[key] += 1
    keyed.sort(key=lambda pair: pair[0])
    return [item for _, item in keyed]
