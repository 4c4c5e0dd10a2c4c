"""SubscribeBlinks' fan-out: every subscriber of one aggregator process shares one Redis reader.

One blocking XREAD follows the global event stream (one Redis connection, however many subscribers) and
hands each event to every subscriber's bounded queue. A subscriber that falls `buffer` events behind is
dropped with RESOURCE_EXHAUSTED naming the event id to resume after; nobody else waits for it, and idle
subscribers cost no Redis connection (100 of them once took redis-py's whole pool and stopped every write).

A subscriber that asks for stored events (`after_id`) is registered for live events first and then reads the
history with non-blocking reads; events seen in both are passed on once, in id order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from blinkstack.aggregator.events import id_order
from blinkstack.aggregator.store import TRANSIENT, RedisStore, StoreUnavailable
from blinkstack.common.errors import ResourceExhausted

log = logging.getLogger(__name__)
Entry = tuple[str, dict[str, str]]


class _Subscriber:
    def __init__(self, buffer: int) -> None:
        self.queue: asyncio.Queue[Entry] = asyncio.Queue(maxsize=buffer)
        self.overflowed = False

    def offer(self, entry: Entry) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.overflowed = True


class EventFanout:
    def __init__(self, store: RedisStore, block_ms: int = 1000, buffer: int = 4096) -> None:
        self.store, self.block_ms, self.buffer = store, block_ms, buffer
        self._subscribers: set[_Subscriber] = set()
        self._reader: asyncio.Task | None = None
        self._started = asyncio.Event()
        self._closing = False

    async def subscribe(self, after_id: str) -> AsyncIterator[Entry]:
        """Events after `after_id` ("" : only new ones), then live ones, until the caller stops."""
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(), name="event-fanout")
        try:
            await asyncio.wait_for(self._started.wait(), self.store.retry_s)
        except TimeoutError:
            raise StoreUnavailable(f"Redis at {self.store.url} is unreachable") from None
        subscriber = _Subscriber(self.buffer)
        self._subscribers.add(subscriber)
        try:
            last = ""
            if after_id:
                async for entry in self._history(after_id):
                    last = entry[0]
                    yield entry
            while True:
                if subscriber.overflowed and subscriber.queue.empty():
                    raise ResourceExhausted(
                        f"this subscriber fell {self.buffer} events behind; resubscribe with after_id={last or '0'}"
                    )
                entry = await subscriber.queue.get()
                if last and id_order(entry[0]) <= id_order(last):
                    continue  # already passed on from the history
                last = entry[0]
                yield entry
        finally:
            self._subscribers.discard(subscriber)

    async def _history(self, after_id: str) -> AsyncIterator[Entry]:
        cursor = after_id
        while True:
            entries = await self.store.retrying(lambda: self.store.read_events(cursor, None))  # noqa: B023
            if not entries:
                return
            for entry in entries:
                cursor = entry[0]
                yield entry

    async def _read(self) -> None:
        """The one reader: from the newest event at start, every new event to every subscriber."""
        delay = 0.05
        cursor = None
        # A flag, not the task's cancellation, ends the loop: redis-py may swallow a cancelled blocking read or
        # turn it into a connection error (what `store.raise_if_cancelled` catches in the retry loop).
        while not self._closing:
            try:
                if cursor is None:
                    cursor = await self.store.last_event_id()
                    self._started.set()
                entries = await self.store.read_events(cursor, self.block_ms)
                delay = 0.05
            except (*TRANSIENT, StoreUnavailable) as exc:  # Redis restarting: wait, resume from the same cursor
                if self._closing:
                    return
                log.warning("event reader waiting for Redis: %s", exc)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 1.0)
                continue
            for entry in entries:
                cursor = entry[0]
                for subscriber in list(self._subscribers):
                    subscriber.offer(entry)

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
