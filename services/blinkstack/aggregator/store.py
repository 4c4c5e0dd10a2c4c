"""Redis as the aggregator's memory: per-track and per-stream state in hashes, events in Streams.

Keys (prefix `blinkstack` by default) carry their event shard as a Redis Cluster hash tag, `{<k>}`, where a camera
stream's shard is `crc32(stream_id) % event_shards`:
- `<prefix>:{<k>}:track:<stream_id>:<track_id>` hash: `seq` (last applied observation/frame seq), `state` (engine
  JSON);
- `<prefix>:{<k>}:stream:<stream_id>` hash: the camera stream's last frame `seq`, `timestamp_us` and tracker state;
- `<prefix>:{<k>}:tracks:<stream_id>` sorted set: the stream's track ids by when each was first stored, trimmed to
  the key TTL, so a stream holds at most `max_tracks` tracks (one client inventing track ids filled a 64 MB Redis
  in 17 s);
- `<prefix>:{<k>}:events` (every event of the shard's streams) and `<prefix>:{<k>}:events:<stream_id>` (one
  camera's), trimmed with `MAXLEN ~` and, when a maximum age is set, exactly by age with `MINID` (Redis >= 6.2;
  events are few, so exact is cheap). An event gets the same Redis id in both: the shard's XADD picks it, the
  per-stream XADD reuses it.
So everything one write touches lies in one hash slot: on a Redis Cluster one Lua script can update it
atomically, and the shards (not the camera streams) decide how the event streams spread over the masters.

Every write of a hash and its events goes through one Lua script, atomically, and only if its `seq` is newer
than the stored one. Re-applying a write (a retry after a lost reply, or a client re-sending observations after
an aggregator crash) therefore changes nothing and emits no event twice. That is also why a batch of writes needs
no transaction on a Redis Cluster (where a transaction cannot span slots): on one Redis a batch is one MULTI
(one fsync), on a cluster each write is atomic on its own, and a batch that fails half-way is re-sent whole.
Calls retry with exponential backoff while Redis is unreachable or a cluster is failing over, up to `retry_s`,
then raise `StoreUnavailable`. A Redis that refuses writes for want of memory (maxmemory with noeviction) raises
`StoreFull` (RESOURCE_EXHAUSTED) at once, without Redis's own text, and readiness stays down until a probe write
gets through again (`writable`): nothing is written meanwhile, what was stored stays readable.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    BusyLoadingError,
    ClusterError,
    ConnectionError,
    OutOfMemoryError,
    ResponseError,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)

from blinkstack.aggregator.cursor import public_id
from blinkstack.common import metrics
from blinkstack.common.errors import ResourceExhausted, Unavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_EVENT_SHARDS = 1024  # each has its reader (one blocking connection) in every aggregator
MAX_SEQ = 2**53 - 1  # the largest seq the Lua script compares exactly; larger ones are refused up front
# Redis away or restarting, or a cluster whose slots are moving or not covered while a master is down.
TRANSIENT = (
    ConnectionError,
    TimeoutError,
    BusyLoadingError,
    OSError,
    ClusterError,
    TryAgainError,
    SlotNotCoveredError,
)

# KEYS: hash, shard events, stream events. ARGV: seq, maxlen shard, maxlen stream, min id ("0": no age limit),
# idle expiry in ms ("0": never), n hash pairs, pairs..., then per event: n pairs, pairs...
# Returns {} when the write is not newer than the stored seq, else {"ok", ids...}. Seqs are compared as Lua
# numbers (doubles): exact up to MAX_SEQ, which callers enforce.
_APPLY = """
local stored = tonumber(redis.call('HGET', KEYS[1], 'seq') or '-1')
if stored >= tonumber(ARGV[1]) then return {} end
local pos = 7
local pairs_n = tonumber(ARGV[6])
local fields = {'seq', ARGV[1]}
for i = 1, pairs_n * 2 do fields[#fields + 1] = ARGV[pos]; pos = pos + 1 end
redis.call('HSET', KEYS[1], unpack(fields))
if ARGV[5] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
local result = {'ok'}
while pos <= #ARGV do
  local n = tonumber(ARGV[pos]); pos = pos + 1
  local entry = {}
  for i = 1, n * 2 do entry[#entry + 1] = ARGV[pos]; pos = pos + 1 end
  local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(entry))
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], id, unpack(entry))
  result[#result + 1] = id
end
if ARGV[5] ~= '0' and #result > 1 then redis.call('PEXPIRE', KEYS[3], ARGV[5]) end
if ARGV[4] ~= '0' and #result > 1 then
  redis.call('XTRIM', KEYS[2], 'MINID', ARGV[4])
  redis.call('XTRIM', KEYS[3], 'MINID', ARGV[4])
end
return result
"""


class StoreUnavailable(Unavailable):
    """Redis stayed unreachable for longer than the retry budget."""


class StoreFull(ResourceExhausted):
    """Redis refuses writes: its memory is full (maxmemory), or it cannot persist (MISCONF)."""


class TrackCapReached(ResourceExhausted):
    """A stream already holds its maximum of tracks."""


def refuses_writes(exc: ResponseError) -> str:
    """ "OOM" or "MISCONF" when `exc` is Redis refusing writes for want of memory (maxmemory) or because it cannot
    save; "" for any other error. Retrying within a call cannot cure either."""
    text = str(exc)
    if isinstance(exc, OutOfMemoryError) or "OOM " in text or "maxmemory" in text:
        return "OOM"
    return "MISCONF" if "MISCONF" in text else ""


RECOVERED_BELOW = 0.9  # of maxmemory: a full Redis counts as writable again below this

# KEYS: the stream's track index. ARGV: track id, now (ms), cap, TTL (ms, "0": none). 1: admitted, 0: full.
_ADMIT_TRACK = """
if ARGV[4] ~= '0' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[4]))
end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if ARGV[4] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return 1
"""


@dataclass
class Write:
    """A hash update (applied only if `seq` is newer) and the events that go with it."""

    key: str
    stream_id: str
    seq: int
    fields: dict[str, str]
    events: list[dict[str, str]] = field(default_factory=list)


def raise_if_cancelled() -> None:
    """Call where a Redis error was caught: redis-py reports a cancelled call as a lost connection, and a task
    that retried it would swallow its own cancellation."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def connection_torn_down(exc: BaseException) -> bool:
    """An AttributeError or TypeError raised inside redis-py's connection code: how redis-py 8.1's asyncio
    client reports a write on a connection the peer has just closed (redis/redis-py#4287), e.g. while a cluster
    node restarts. redis-py drops that connection, so a retry reconnects."""
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and "/redis/asyncio/" in frame.tb_frame.f_code.co_filename


def redacted(url: str) -> str:
    """A Redis URL without its password (`redis://user:***@host:6379/0`)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class KeyLayout:
    """The key names; see the module docstring."""

    prefix: str = "blinkstack"
    shards: int = 1

    def shard_of(self, stream_id: str) -> int:
        return zlib.crc32(stream_id.encode()) % self.shards

    def _tag(self, shard: int) -> str:
        return f"{self.prefix}:{{{shard}}}"

    def _tagged(self, stream_id: str) -> str:
        return self._tag(self.shard_of(stream_id))

    def track(self, stream_id: str, track_id: int) -> str:
        return f"{self._tagged(stream_id)}:track:{stream_id}:{track_id}"

    def stream(self, stream_id: str) -> str:
        return f"{self._tagged(stream_id)}:stream:{stream_id}"

    def events(self, shard: int) -> str:
        return f"{self._tag(shard)}:events"

    def stream_events(self, stream_id: str) -> str:
        return f"{self._tagged(stream_id)}:events:{stream_id}"

    def tracks(self, stream_id: str) -> str:
        return f"{self._tagged(stream_id)}:tracks:{stream_id}"


@dataclass(frozen=True)
class StoreSettings:
    """Where the aggregator keeps its state and how much of it (each field is the aggregator flag of that name)."""

    redis_url: str
    redis_prefix: str = "blinkstack"
    redis_retry_s: float = 30.0  # how long writes wait for Redis
    redis_cluster: bool = False
    event_shards: int = 1
    events_maxlen: int = 100_000
    stream_events_maxlen: int = 10_000
    events_max_age_s: float = 0.0
    key_ttl_s: float = 0.0  # 0: keys never expire
    max_tracks_per_stream: int = 10_000  # 0: no limit


class RedisStore:
    def __init__(self, settings: StoreSettings) -> None:
        if not 1 <= settings.event_shards <= MAX_EVENT_SHARDS:
            raise ValueError(f"event shards must be 1..{MAX_EVENT_SHARDS} (got {settings.event_shards})")
        self.keys = KeyLayout(settings.redis_prefix, settings.event_shards)
        self.events_max_age_s, self.key_ttl_ms = settings.events_max_age_s, round(settings.key_ttl_s * 1000)
        self.events_maxlen, self.stream_events_maxlen = settings.events_maxlen, settings.stream_events_maxlen
        self.retry_s, self.cluster = settings.redis_retry_s, settings.redis_cluster
        self.max_tracks = settings.max_tracks_per_stream
        self.full = ""  # why Redis last refused a write ("": it did not, or a probe write got through since)
        self.url = redacted(settings.redis_url)  # what errors and logs show: never the password
        metrics.AGGREGATOR_REDIS_WRITABLE.set(1)
        client = RedisCluster if settings.redis_cluster else aioredis.Redis
        self.redis = client.from_url(settings.redis_url, socket_connect_timeout=1.0, socket_timeout=10.0)

    @property
    def shards(self) -> int:
        return self.keys.shards

    # --- calls ---
    async def retrying(self, call: Callable[[], Awaitable[T]], budget_s: float | None = None) -> T:
        """`call()` until it gets through, backing off while Redis is unreachable, within the budget."""
        deadline = time.monotonic() + (self.retry_s if budget_s is None else budget_s)
        delay = 0.05
        while True:
            try:
                return await call()
            except (*TRANSIENT, AttributeError, TypeError) as exc:
                if not isinstance(exc, TRANSIENT) and not connection_torn_down(exc):
                    raise
                raise_if_cancelled()
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailable(f"Redis at {self.url} is unreachable: {exc}") from None
                log.warning("Redis unreachable (%s); retrying in %.2f s", exc, delay)
                metrics.AGGREGATOR_REDIS_RETRIES.inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            # After the transient ones: ClusterDownError and TryAgainError are ResponseErrors too.
            except ResponseError as exc:
                code = refuses_writes(exc)
                if not code:
                    raise
                self._refused(code)
                raise StoreFull(
                    f"Redis at {self.url} refuses writes ({code}: "
                    + ("its memory is full" if code == "OOM" else "it cannot persist")
                    + "): nothing was written, re-send later (duplicates are ignored); what was stored before is kept "
                    "and readable"
                ) from None

    def _refused(self, code: str) -> None:
        if not self.full:
            log.error("Redis at %s refuses writes (%s): not ready until it takes them again", self.url, code)
        self.full = code
        metrics.AGGREGATOR_REDIS_WRITABLE.set(0)

    async def ping(self) -> bool:
        try:
            up = bool(await self.redis.ping())
        except (*TRANSIENT, ResponseError):
            up = False
        metrics.AGGREGATOR_REDIS_UP.set(int(up))
        return up

    async def writable(self) -> bool:
        """After a refusal: whether writes get through again (space was freed, maxmemory raised). A full Redis
        still takes a small write now and then, as its memory hovers at the limit: it must have room to spare."""
        if not self.full:
            return True
        try:
            if not self.cluster:  # a cluster's memory is per master; there the probe write alone decides
                memory = await self.redis.info("memory")
                if memory.get("maxmemory") and memory["used_memory"] > RECOVERED_BELOW * memory["maxmemory"]:
                    return False
            await self.redis.set(f"{self.keys.prefix}:probe", b"1", px=1000)
        except TRANSIENT:  # first: ClusterDownError is a ResponseError too
            return False
        except ResponseError as exc:
            if refuses_writes(exc):
                return False
            raise
        log.warning("Redis at %s takes writes again", self.url)
        self.full = ""
        metrics.AGGREGATOR_REDIS_WRITABLE.set(1)
        return True

    async def admit_track(self, stream_id: str, track_id: int) -> None:
        """Count a track new to Redis against its stream's `max_tracks` (0: no limit)."""
        if not self.max_tracks:
            return
        key, now_ms = self.keys.tracks(stream_id), int(time.time() * 1000)
        args = (track_id, now_ms, self.max_tracks, self.key_ttl_ms)
        if not await self.retrying(lambda: self.redis.eval(_ADMIT_TRACK, 1, key, *args)):
            raise TrackCapReached(
                f"stream {stream_id!r} already holds {self.max_tracks:,} tracks (--max-tracks-per-stream); track "
                f"{track_id} was not stored. Tracks leave the count --key-ttl-s after they first appeared"
            )

    async def read_hash(self, key: str) -> dict[str, str]:
        # redis-py types its replies for either `decode_responses`; this client never decodes: bytes.
        raw = cast(dict[bytes, bytes], await self.retrying(lambda: self.redis.hgetall(key)))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def apply(self, writes: list[Write]) -> list[list[str] | None]:
        """Apply writes (one MULTI on one Redis; see the module docstring for a cluster); per write, the new
        event ids (`cursor.public_id`), or None when it was not newer."""
        if not writes:
            return []
        shards = [self.keys.shard_of(w.stream_id) for w in writes]

        async def run() -> list:
            # Stream ids start with the Redis server's clock in ms; the local clock stands in for it here.
            min_id = f"{int((time.time() - self.events_max_age_s) * 1000)}-0" if self.events_max_age_s > 0 else "0"
            pipe = self.redis.pipeline(transaction=not self.cluster)
            for w, shard in zip(writes, shards, strict=True):
                args: list[str | int] = [w.seq, self.events_maxlen, self.stream_events_maxlen, min_id]
                args += [self.key_ttl_ms, len(w.fields)]
                for k, v in w.fields.items():
                    args += [k, v]
                for event in w.events:
                    args.append(len(event))
                    for k, v in event.items():
                        args += [k, v]
                keys = [w.key, self.keys.events(shard), self.keys.stream_events(w.stream_id)]
                # EVAL, not EVALSHA: a restarted Redis has an empty script cache, and the script's text costs
                # less than the round trip a pipeline needs to check the cache first.
                pipe.eval(_APPLY, len(keys), *keys, *args)
            return await pipe.execute()

        results = await self.retrying(run)
        return [
            [public_id(i.decode(), shard, self.shards) for i in r[1:]] if r else None
            for shard, r in zip(shards, results, strict=True)
        ]

    async def last_event_id(self, shard: int) -> str:
        """The Redis id of the shard's newest event ("0-0": none)."""
        newest = await self.retrying(lambda: self.redis.xrevrange(self.keys.events(shard), count=1))
        return cast(bytes, newest[0][0]).decode() if newest else "0-0"

    async def read_events(
        self, shard: int, after_id: str, block_ms: int | None, count: int = 256
    ) -> list[tuple[str, dict[str, str]]]:
        """The shard's events (Redis ids) after `after_id`, waiting up to `block_ms` for the first one (None:
        not at all)."""
        reply: list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] = cast(
            list, await self.redis.xread({self.keys.events(shard): after_id}, count=count, block=block_ms)
        )
        if not reply:
            return []
        return [
            (entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()}) for entry_id, fields in reply[0][1]
        ]

    async def close(self) -> None:
        await self.redis.aclose()
