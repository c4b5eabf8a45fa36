"""Dynamic batching for servers: concurrent requests are gathered into batches for one model worker thread.

Requests with the same key (e.g. equal sampling settings) can share a batch. The oldest waiting request waits
at most ``max_wait_s`` for others to join it; up to ``max_batch_size`` items go to one ``process`` call, which
runs on a single worker thread so the event loop keeps answering. When a batch fails, its items are retried one
by one, so a broken input fails only the request that sent it. With ``max_queue`` set, an item arriving when
that many already wait is refused at once with :class:`QueueFull` (answer 429 and let the client back off)
instead of growing the queue and every request's latency without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")
Context = TypeVar("Context")


class QueueFull(Exception):
    """The batcher already holds ``max_queue`` waiting items."""


class ShuttingDown(Exception):
    """The batcher was closed while the item waited."""


@dataclass(eq=False)  # compared by identity: items may be tensors, whose == is elementwise
class _Waiting(Generic[Item, Result]):
    item: Item
    future: asyncio.Future[Result]
    arrived: float


@dataclass
class _Group(Generic[Item, Result, Context]):
    context: Context
    waiting: list[_Waiting[Item, Result]] = field(default_factory=list)


@dataclass
class BatchStats:
    """What the batcher has done so far (for metrics and benchmarks)."""

    batches: int = 0
    items: int = 0
    largest_batch: int = 0
    rejected: int = 0
    busy_s: float = 0.0
    """Seconds the worker thread spent in ``process`` calls: against the wall time, how busy the model was."""


class DynamicBatcher(Generic[Item, Result, Context]):
    """Batches concurrent :meth:`submit` calls for ``process(context, items) -> results`` (one result per item,
    in order). Create and use it inside one running event loop."""

    def __init__(
        self,
        process: Callable[[Context, list[Item]], Sequence[Result]],
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int | None = None,
        on_batch: Callable[[int], None] | None = None,
        thread_name: str = "cookbook-batch",
    ) -> None:
        self.process = process
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.stats = BatchStats()
        self._on_batch = on_batch
        self._thread_name = thread_name
        self._groups: dict[str, _Group[Item, Result, Context]] = {}
        self._in_flight: list[_Waiting[Item, Result]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def queued(self) -> int:
        """Items waiting for a batch (not counting the batch being processed)."""
        return sum(len(group.waiting) for group in self._groups.values())

    async def submit(self, item: Item, key: str = "", context: Context | None = None) -> Result:
        """Wait for ``item``'s result, computed in a batch with other items of the same ``key``; ``context``
        (given with the first item of a key) is passed to ``process`` with the batch."""
        if self.max_queue is not None and self.queued >= self.max_queue:
            self.stats.rejected += 1
            raise QueueFull(f"{self.queued} requests are already waiting (the limit is {self.max_queue})")
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._thread_name)
            self._task = loop.create_task(self._run())
        future: asyncio.Future[Result] = loop.create_future()
        group = self._groups.setdefault(key, _Group(context))  # type: ignore[arg-type]
        waiting = _Waiting(item, future, loop.time())
        group.waiting.append(waiting)
        self._wake.set()
        try:
            return await future
        except asyncio.CancelledError:
            self._withdraw(key, waiting)
            raise

    def _withdraw(self, key: str, waiting: _Waiting[Item, Result]) -> None:
        """Take back an item whose caller stopped waiting (a timed-out request, or one a sibling item's refusal
        ended): its place in the queue is free at once, not when the worker next looks at the queue, which may
        be only after the model call in progress ends."""
        group = self._groups.get(key)
        if group is None or waiting not in group.waiting:
            return  # already in a batch
        group.waiting.remove(waiting)
        if not group.waiting:
            del self._groups[key]
        self._wake.set()

    async def close(self) -> None:
        """Stop the worker; items waiting or being processed fail with :class:`ShuttingDown`."""
        in_flight = self._in_flight
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        stopped = [*in_flight, *(waiting for group in self._groups.values() for waiting in group.waiting)]
        for waiting in stopped:
            _settle(waiting.future, error=ShuttingDown("the server is shutting down"))
        self._in_flight = []
        self._groups.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._wake = asyncio.Event()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            for key, group in list(self._groups.items()):
                group.waiting = [waiting for waiting in group.waiting if not waiting.future.done()]
                if not group.waiting:
                    del self._groups[key]
            if not self._groups:
                self._wake.clear()
                await self._wake.wait()
                continue
            key, group = min(self._groups.items(), key=lambda entry: entry[1].waiting[0].arrived)
            left = group.waiting[0].arrived + self.max_wait_s - loop.time()
            if len(group.waiting) < self.max_batch_size and left > 0:
                self._wake.clear()
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), left)
                continue
            batch = group.waiting[: self.max_batch_size]
            del group.waiting[: self.max_batch_size]
            if not group.waiting:
                del self._groups[key]
            await self._dispatch(batch, group.context)

    async def _dispatch(self, batch: list[_Waiting[Item, Result]], context: Context) -> None:
        self._in_flight = batch
        try:
            await self._process(batch, context)
        finally:
            self._in_flight = []

    async def _process(self, batch: list[_Waiting[Item, Result]], context: Context) -> None:
        try:
            results = await self._call([waiting.item for waiting in batch], context)
        except Exception as error:
            if len(batch) == 1:
                _settle(batch[0].future, error=error)
                return
            logger.warning("a batch of %d failed (%s); retrying its items one by one", len(batch), error)
            for waiting in batch:
                if waiting.future.done():
                    continue
                try:
                    [result] = await self._call([waiting.item], context)
                except Exception as single_error:
                    _settle(waiting.future, error=single_error)
                else:
                    _settle(waiting.future, result=result)
            return
        for waiting, result in zip(batch, results, strict=True):
            _settle(waiting.future, result=result)

    async def _call(self, items: list[Item], context: Context) -> Sequence[Result]:
        assert self._executor is not None
        self.stats.batches += 1
        self.stats.items += len(items)
        self.stats.largest_batch = max(self.stats.largest_batch, len(items))
        if self._on_batch is not None:
            self._on_batch(len(items))
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self.process, context, items)
        finally:
            self.stats.busy_s += time.perf_counter() - started
        if len(results) != len(items):
            raise RuntimeError(f"the model returned {len(results)} results for {len(items)} inputs")
        return results


def _settle(future: asyncio.Future[Result], *, result: Result | None = None, error: Exception | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]
