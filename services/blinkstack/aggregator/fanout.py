"""SubscribeBlinks' fan-out: every subscriber of one aggregator process shares one Redis reader per event shard.

Each shard's reader follows its event stream with one blocking XREAD (one Redis connection, however many
subscribers) and hands each event to every subscriber's bounded queue. A subscriber that falls `buffer` events
behind is dropped with RESOURCE_EXHAUSTED naming the cursor to resume from; nobody else waits for it, and idle
subscribers cost no Redis connection (100 of them once took redis-py's whole pool and stopped every write).

A subscriber keeps its position in every shard (`cursor.py`). One that asks for stored events (`after_id`) is
registered for live events first, then reads the history of all shards merged in id order with non-blocking
reads; events seen in both are passed on once. Live events come in the order the shards' readers get them: in
order within a shard, so in order per camera stream, whose events all live in one shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator

from blinkstack.aggregator import cursor
from blinkstack.aggregator.event_forms import id_order
from blinkstack.aggregator.store import TRANSIENT, RedisStore, StoreUnavailable
from blinkstack.common import metrics
from blinkstack.common.errors import ResourceExhausted

log = logging.getLogger(__name__)
Entry = tuple[str, dict[str, str]]  # Redis id, fields
Delivery = tuple[str, dict[str, str], str]  # public event id, fields, the subscription's cursor after it


class _Subscriber:
    def __init__(self, buffer: int) -> None:
        self.queue: asyncio.Queue[tuple[int, Entry]] = asyncio.Queue(maxsize=buffer)
        self.overflowed = False

    def offer(self, shard: int, entry: Entry) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait((shard, entry))
        except asyncio.QueueFull:
            self.overflowed = True


class EventFanout:
    def __init__(self, store: RedisStore, block_ms: int = 1000, buffer: int = 4096) -> None:
        self.store, self.block_ms, self.buffer = store, block_ms, buffer
        self._subscribers: set[_Subscriber] = set()
        self._readers: list[asyncio.Task] = []
        self._positions = ["0-0"] * store.shards  # each reader's last event passed on, once it is ready
        self._ready = [asyncio.Event() for _ in range(store.shards)]  # the reader has its starting position
        self._closing = False

    async def subscribe(self, after_id: str) -> AsyncIterator[Delivery]:
        """Events after `after_id` (a cursor or event id; "": only new ones), then live ones, until the caller
        stops. InvalidInput for an `after_id` that is neither."""
        positions = cursor.parse(after_id, self.store.shards)
        await self._started()
        subscriber = _Subscriber(self.buffer)
        self._subscribers.add(subscriber)
        metrics.AGGREGATOR_SUBSCRIBERS.set(len(self._subscribers))
        # From here on every event after the readers' positions reaches the queue (no await in between); every
        # reader has its position once `_started` returned.
        positions = positions or list(self._positions)
        try:
            if after_id:
                async for shard, entry in self._history(positions):
                    yield self._deliver(positions, shard, entry)
            while True:
                if subscriber.overflowed and subscriber.queue.empty():
                    metrics.AGGREGATOR_SUBSCRIBERS_DROPPED.inc()
                    raise ResourceExhausted(
                        f"this subscriber fell {self.buffer} events behind; resubscribe with "
                        f"after_id={cursor.to_text(positions)}"
                    )
                shard, entry = await subscriber.queue.get()
                if cursor.newer(entry[0], positions[shard]):  # else already passed on from the history
                    yield self._deliver(positions, shard, entry)
        finally:
            self._subscribers.discard(subscriber)
            metrics.AGGREGATOR_SUBSCRIBERS.set(len(self._subscribers))

    def _deliver(self, positions: list[str], shard: int, entry: Entry) -> Delivery:
        positions[shard] = entry[0]
        return cursor.public_id(entry[0], shard, self.store.shards), entry[1], cursor.to_text(positions)

    async def _started(self) -> None:
        if not self._readers:
            self._readers = [
                asyncio.create_task(self._read(shard), name=f"event-fanout-{shard}")
                for shard in range(self.store.shards)
            ]
        try:
            await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in self._ready)), self.store.retry_s)
        except TimeoutError:
            raise StoreUnavailable(f"Redis at {self.store.url} is unreachable") from None

    async def _history(self, positions: list[str]) -> AsyncIterator[tuple[int, Entry]]:
        """Stored events after `positions`, all shards merged in id order."""
        pages: dict[int, deque[Entry]] = {}

        async def refill(shard: int, after: str) -> None:
            page = await self.store.retrying(lambda: self.store.read_events(shard, after, None))
            if page:
                pages[shard] = deque(page)
            else:
                pages.pop(shard, None)

        for shard, after in enumerate(positions):
            await refill(shard, after)
        while pages:
            shard = min(pages, key=lambda k: id_order(pages[k][0][0]))
            entry = pages[shard].popleft()
            yield shard, entry
            if not pages[shard]:
                await refill(shard, entry[0])

    async def _read(self, shard: int) -> None:
        """One shard's reader: from its newest event at start, every new event to every subscriber."""
        delay = 0.05
        # A flag, not the task's cancellation, ends the loop: redis-py may swallow a cancelled blocking read or
        # turn it into a connection error (what `store.raise_if_cancelled` catches in the retry loop).
        while not self._closing:
            try:
                if not self._ready[shard].is_set():
                    self._positions[shard] = await self.store.last_event_id(shard)
                    self._ready[shard].set()
                entries = await self.store.read_events(shard, self._positions[shard], self.block_ms)
                delay = 0.05
            except Exception as exc:  # every subscriber depends on this task: it must not die
                if self._closing:
                    return
                if isinstance(exc, (*TRANSIENT, StoreUnavailable)):  # Redis restarting or failing over
                    log.warning("event reader of shard %d waiting for Redis: %s", shard, exc)
                else:  # e.g. redis-py tripping over a connection closed under it while a cluster node restarts
                    log.exception("event reader of shard %d failed; retrying from the same position", shard)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 1.0)
                continue
            for entry in entries:
                self._positions[shard] = entry[0]
                for subscriber in list(self._subscribers):
                    subscriber.offer(shard, entry)
            if entries:
                fullest = max((s.queue.qsize() for s in self._subscribers), default=0)
                metrics.AGGREGATOR_SUBSCRIBER_BACKLOG.set(fullest / self.buffer)

    async def close(self) -> None:
        self._closing = True
        for reader in self._readers:
            reader.cancel()
        for reader in self._readers:
            with contextlib.suppress(asyncio.CancelledError):
                await reader  # the loop returns on the flag, or on a cancelled read
