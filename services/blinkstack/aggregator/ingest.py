"""Observations in, Redis out: the commit every write goes through, and the group commit of PublishEyeStates.

A batch counts as accepted once Redis has it; every reply is sent after that. Whatever arrived while the
previous batch was being written goes to Redis in the next transaction.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

from blinkstack.aggregator.engine import EngineConfig
from blinkstack.aggregator.store import RedisStore, StoreUnavailable, TrackCapReached, Write
from blinkstack.aggregator.tracks import ACCEPTED, DUPLICATE, LATE, TrackBook, observation_from_request
from blinkstack.common import metrics
from blinkstack.common.errors import IdleStream, InvalidInput, Unavailable
from blinkstack.v1 import aggregator_pb2

MAX_BATCH = 4096  # observations per Redis transaction
MAX_OBSERVATIONS_PER_MESSAGE = 4096
# What a client learns when Redis stays away: re-sending is safe because seqs make re-sends duplicates.
NOT_ACCEPTED = "what came after the last reply was not accepted: re-send it (duplicates are ignored)"


def not_accepted(exc: StoreUnavailable) -> Unavailable:
    """Redis stayed away in the middle of a write: the client is told what to re-send."""
    return Unavailable(f"{exc}; {NOT_ACCEPTED}")


async def commit(store: RedisStore, writes: list[Write]) -> list[list[str] | None]:
    """Apply `writes` in one transaction; the stored event ids of each write, in order."""
    start = time.perf_counter()
    try:
        ids = await store.apply(writes)
    except StoreUnavailable as exc:
        raise not_accepted(exc) from None
    metrics.AGGREGATOR_COMMIT_SECONDS.observe(time.perf_counter() - start)
    for write in writes:
        for event in write.events:
            metrics.AGGREGATOR_EVENTS.labels(event["type"], event["phase"]).inc()
    return ids


class GroupCommit:
    """The writes of concurrent callers (TrackFrames' camera streams) in one Redis transaction: a caller's
    writes join whatever other callers queued while the previous transaction was in flight.

    One MULTI (one fsync) and one connection for many cameras instead of one each: with hundreds of cameras per
    aggregator, per-camera transactions ran out of redis-py's 100 pooled connections and of fsyncs
    (bench/bench_redis.py). A caller's reply still waits for its own writes to be in Redis; if the
    transaction fails, every caller in it gets the error and re-sends (re-applied writes change nothing).
    """

    def __init__(self, store: RedisStore, max_writes: int = MAX_BATCH) -> None:
        self.store, self.max_writes = store, max_writes
        self._queue: list[tuple[list[Write], asyncio.Future]] = []
        self._committer: asyncio.Task | None = None

    async def commit(self, writes: list[Write]) -> list[list[str] | None]:
        """`commit(store, writes)`, sharing the transaction with concurrent callers."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((writes, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_queued(), name="group-commit")
        return await future

    async def _commit_queued(self) -> None:
        while self._queue:
            taken, count = 0, 0
            while taken < len(self._queue) and (not taken or count + len(self._queue[taken][0]) <= self.max_writes):
                count += len(self._queue[taken][0])
                taken += 1
            batch, self._queue = self._queue[:taken], self._queue[taken:]
            try:
                ids = await commit(self.store, [w for writes, _ in batch for w in writes])
            except Exception as exc:  # Redis stayed away: each caller learns it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            offset = 0
            for writes, future in batch:
                if not future.done():  # a caller that was cancelled meanwhile: its writes are in, harmlessly
                    future.set_result(ids[offset : offset + len(writes)])
                offset += len(writes)


async def single_messages(
    requests: AsyncIterator[aggregator_pb2.EyeObservation],
) -> AsyncIterator[list[aggregator_pb2.EyeObservation]]:
    """PublishEyeStates: one observation per message."""
    async for observation in requests:
        yield [observation]


async def batch_messages(
    requests: AsyncIterator[aggregator_pb2.PublishEyeStatesRequest],
) -> AsyncIterator[list[aggregator_pb2.EyeObservation] | InvalidInput]:
    """PublishEyeStateBatches: many per message; an oversized message ends the stream as an InvalidInput."""
    async for request in requests:
        if len(request.observations) > MAX_OBSERVATIONS_PER_MESSAGE:
            yield InvalidInput(
                f"{len(request.observations)} observations in one message exceed the limit of "
                f"{MAX_OBSERVATIONS_PER_MESSAGE}"
            )
            return
        yield list(request.observations)


async def publish(
    messages: AsyncIterator[list | InvalidInput], store: RedisStore, config: EngineConfig
) -> aggregator_pb2.PublishSummary:
    """Observations -> engine -> Redis, one transaction per batch of whatever arrived meanwhile.

    A bad observation ends the call with INVALID_ARGUMENT; what came before it is committed first.
    """
    queue: asyncio.Queue = asyncio.Queue(maxsize=64)  # messages; bounded so a fast client waits for Redis
    done = object()

    async def read() -> None:
        try:
            async for message in messages:
                await queue.put(message)
        except (InvalidInput, IdleStream) as exc:  # a message that does not parse, or none for too long: it ends
            await queue.put(exc)  # the call after what came before
        finally:
            await queue.put(done)

    reader = asyncio.create_task(read())
    # Once the call has ended (refused, aborted), the reader's last read may fail after it was cancelled: that
    # outcome is known and needs no "exception was never retrieved" traceback in the log.
    reader.add_done_callback(lambda task: task.cancelled() or task.exception())
    book = TrackBook(store, config)
    counts: Counter[str] = Counter()
    events = 0
    finished = False
    try:
        while not finished:
            # Everything queued while the last batch was being written goes into this one (group commit).
            batch: list = []
            while len(batch) < MAX_BATCH and (not batch or not queue.empty()):
                item = await queue.get()
                batch.extend(item if isinstance(item, list) else [item])
            outcomes: Counter[str] = Counter()
            finished, refused = await _observe_batch(book, batch, done, outcomes)
            writes = book.writes()
            await commit(store, writes)  # what came before a refused observation is kept
            counts.update(outcomes)
            events += sum(len(w.events) for w in writes)
            metrics.AGGREGATOR_OBSERVATIONS.inc(outcomes[ACCEPTED])
            if refused is not None:
                raise type(refused)(f"{refused} (the {counts[ACCEPTED]} observations before it were accepted)")
    finally:
        reader.cancel()
    return aggregator_pb2.PublishSummary(
        accepted=counts[ACCEPTED], duplicates=counts[DUPLICATE], late=counts[LATE], events=events
    )


async def _observe_batch(
    book: TrackBook, batch: list, done: object, outcomes: Counter[str]
) -> tuple[bool, InvalidInput | IdleStream | TrackCapReached | None]:
    """Feed one batch to the engine, counting outcomes: (whether the stream ended, the first observation refused:
    invalid, or a new track over its stream's cap)."""
    for item in batch:
        if item is done:
            return True, None
        if isinstance(item, InvalidInput | IdleStream):
            return False, item
        try:
            obs = observation_from_request(item)
            outcome = await book.observe(item.stream_id, item.track_id, item.seq, obs)
        except (InvalidInput, TrackCapReached) as exc:
            return False, exc
        except StoreUnavailable as exc:
            raise not_accepted(exc) from None
        outcomes[outcome.status] += 1
    return False, None
