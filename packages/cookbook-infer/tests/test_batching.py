"""The dynamic batcher gathers concurrent items, bounds its queue, and isolates a failing item."""

import asyncio
import threading
import time

import pytest

from cookbook_infer.batching import BatchStats, DynamicBatcher, QueueFull, ShuttingDown


def doubling(calls: list[list[int]], delay_s: float = 0.0):  # type: ignore[no-untyped-def]
    def process(context: int, items: list[int]) -> list[int]:
        calls.append(list(items))
        time.sleep(delay_s)
        if -1 in items:
            raise ValueError("bad item")
        return [item * context for item in items]

    return process


def test_concurrent_items_share_batches_up_to_the_limit() -> None:
    calls: list[list[int]] = []

    async def main() -> list[int]:
        batcher = DynamicBatcher(doubling(calls), max_batch_size=4, max_wait_s=0.2)
        try:
            return list(await asyncio.gather(*(batcher.submit(i, "x2", 2) for i in range(10))))
        finally:
            await batcher.close()

    assert asyncio.run(main()) == [2 * i for i in range(10)]
    assert [len(call) for call in calls] == [4, 4, 2]


def test_different_keys_never_share_a_batch() -> None:
    calls: list[list[int]] = []

    async def main() -> list[int]:
        batcher = DynamicBatcher(doubling(calls), max_batch_size=8, max_wait_s=0.05)
        try:
            return list(await asyncio.gather(*(batcher.submit(i, str(i % 2), 1 + i % 2) for i in range(6))))
        finally:
            await batcher.close()

    assert asyncio.run(main()) == [0, 2, 2, 6, 4, 10]
    assert sorted(calls) == [[0, 2, 4], [1, 3, 5]]


def test_a_failing_item_fails_alone() -> None:
    calls: list[list[int]] = []

    async def main() -> list[object]:
        batcher = DynamicBatcher(doubling(calls), max_batch_size=4, max_wait_s=0.2)
        try:
            return list(await asyncio.gather(*(batcher.submit(i, "", 3) for i in (1, -1, 2)), return_exceptions=True))
        finally:
            await batcher.close()

    first, failed, last = asyncio.run(main())
    assert (first, last) == (3, 6)
    assert isinstance(failed, ValueError)
    assert calls == [[1, -1, 2], [1], [-1], [2]]


def test_a_full_queue_refuses_at_once_instead_of_growing() -> None:
    calls: list[list[int]] = []
    started = threading.Event()

    async def main() -> tuple[list[object], BatchStats]:
        batcher = DynamicBatcher(doubling(calls, delay_s=0.3), max_batch_size=1, max_wait_s=0.0, max_queue=2)
        try:
            results = await asyncio.gather(*(batcher.submit(i, "", 1) for i in range(6)), return_exceptions=True)
            return list(results), batcher.stats
        finally:
            started.set()
            await batcher.close()

    results, stats = asyncio.run(main())
    refused = [r for r in results if isinstance(r, QueueFull)]
    assert len(refused) == stats.rejected == 4
    assert [r for r in results if not isinstance(r, Exception)] == [0, 1]
    assert (stats.batches, stats.items) == (2, 2)
    assert stats.busy_s >= 2 * 0.3  # both calls slept in the worker thread


def test_closing_fails_the_waiting_items() -> None:
    async def main() -> None:
        batcher = DynamicBatcher(doubling([], delay_s=0.2), max_batch_size=1, max_wait_s=10.0)
        waiting = asyncio.ensure_future(batcher.submit(1, "", 1))
        await asyncio.sleep(0.05)
        await batcher.close()
        with pytest.raises(ShuttingDown):
            await waiting

    asyncio.run(main())


def test_an_item_whose_caller_stops_waiting_leaves_the_queue_at_once() -> None:
    calls: list[list[int]] = []

    async def main() -> tuple[int, int, int]:
        batcher = DynamicBatcher(doubling(calls, delay_s=0.5), max_batch_size=1, max_wait_s=0.0, max_queue=1)
        try:
            running = asyncio.ensure_future(batcher.submit(1, "", 1))
            await asyncio.sleep(0.1)  # 1 is in the model call
            given_up = asyncio.ensure_future(batcher.submit(2, "", 1))
            await asyncio.sleep(0.05)
            queued_before = batcher.queued
            given_up.cancel()
            await asyncio.sleep(0)
            queued_after = batcher.queued
            third = await batcher.submit(3, "", 1)  # the queue has room again while 1 is still running
            await running
            return queued_before, queued_after, third
        finally:
            await batcher.close()

    assert asyncio.run(main()) == (1, 0, 3)
    assert calls == [[1], [3]]
