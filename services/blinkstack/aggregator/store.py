"""Redis as the aggregator's memory: per-track and per-stream state in hashes, events in Streams.

Keys (prefix `blinkstack` by default):
- `<prefix>:track:<stream_id>:<track_id>` hash: `seq` (last applied observation/frame seq), `state` (engine JSON);
- `<prefix>:stream:<stream_id>` hash: the camera stream's last frame `seq`, `timestamp_us` and tracker state;
- `<prefix>:events` (every event) and `<prefix>:events:<stream_id>` (one camera's), trimmed with `MAXLEN ~`
  and, when a maximum age is set, exactly by age with `MINID` (Redis >= 6.2; events are few, so exact is cheap).
  An event gets the same id in both: the global XADD picks it, the per-stream XADD reuses it, so an id from
  either works as a subscription's resume point.

Every write of a hash and its events goes through one Lua script, atomically, and only if its `seq` is newer
than the stored one. Re-applying a write (a retry after a lost reply, or a client re-sending observations after
an aggregator crash) therefore changes nothing and emits no event twice. Calls retry with exponential backoff
while Redis is unreachable, up to `retry_s`, then raise `StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import BusyLoadingError, ConnectionError, ResponseError, TimeoutError

from blinkstack.common.errors import Unavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_SEQ = 2**53 - 1  # the largest seq the Lua script compares exactly; larger ones are refused up front
TRANSIENT = (ConnectionError, TimeoutError, BusyLoadingError, OSError)  # Redis away or restarting

# KEYS: hash, global events, stream events. ARGV: seq, maxlen global, maxlen stream, min id ("0": no age limit),
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


def redacted(url: str) -> str:
    """A Redis URL without its password (`redis://user:***@host:6379/0`)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisStore:
    def __init__(
        self,
        url: str,
        prefix: str = "blinkstack",
        events_maxlen: int = 100_000,
        stream_events_maxlen: int = 10_000,
        retry_s: float = 30.0,
        events_max_age_s: float = 0.0,
        key_ttl_s: float = 0.0,
    ) -> None:
        self.events_max_age_s, self.key_ttl_ms = events_max_age_s, round(key_ttl_s * 1000)
        self.prefix, self.events_maxlen, self.stream_events_maxlen = prefix, events_maxlen, stream_events_maxlen
        self.retry_s = retry_s
        self.url = redacted(url)  # what errors and logs show: never the password
        self.redis = aioredis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=10.0)
        self._apply = self.redis.register_script(_APPLY)

    # --- keys ---
    def track_key(self, stream_id: str, track_id: int) -> str:
        return f"{self.prefix}:track:{stream_id}:{track_id}"

    def stream_key(self, stream_id: str) -> str:
        return f"{self.prefix}:stream:{stream_id}"

    @property
    def events_key(self) -> str:
        return f"{self.prefix}:events"

    def stream_events_key(self, stream_id: str) -> str:
        return f"{self.prefix}:events:{stream_id}"

    # --- calls ---
    async def retrying(self, call: Callable[[], Awaitable[T]], budget_s: float | None = None) -> T:
        """`call()` until it gets through, backing off while Redis is unreachable, within the budget."""
        deadline = time.monotonic() + (self.retry_s if budget_s is None else budget_s)
        delay = 0.05
        while True:
            try:
                return await call()
            except TRANSIENT as exc:
                raise_if_cancelled()
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailable(f"Redis at {self.url} is unreachable: {exc}") from None
                log.warning("Redis unreachable (%s); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (*TRANSIENT, ResponseError):
            return False

    async def read_hash(self, key: str) -> dict[str, str]:
        raw = await self.retrying(lambda: self.redis.hgetall(key))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def apply(self, writes: list[Write]) -> list[list[str] | None]:
        """Apply writes in one transaction; per write, the new event ids, or None when it was not newer."""
        if not writes:
            return []

        async def run() -> list:
            # Stream ids start with the Redis server's clock in ms; the local clock stands in for it here.
            min_id = f"{int((time.time() - self.events_max_age_s) * 1000)}-0" if self.events_max_age_s > 0 else "0"
            pipe = self.redis.pipeline(transaction=True)
            for w in writes:
                args: list[str | int] = [w.seq, self.events_maxlen, self.stream_events_maxlen, min_id]
                args += [self.key_ttl_ms, len(w.fields)]
                for k, v in w.fields.items():
                    args += [k, v]
                for event in w.events:
                    args.append(len(event))
                    for k, v in event.items():
                        args += [k, v]
                keys = [w.key, self.events_key, self.stream_events_key(w.stream_id)]
                await self._apply(keys=keys, args=args, client=pipe)
            return await pipe.execute()

        results = await self.retrying(run)
        return [[i.decode() for i in r[1:]] if r else None for r in results]

    async def last_event_id(self) -> str:
        newest = await self.retrying(lambda: self.redis.xrevrange(self.events_key, count=1))
        return newest[0][0].decode() if newest else "0-0"

    async def read_events(
        self, after_id: str, block_ms: int | None, count: int = 256
    ) -> list[tuple[str, dict[str, str]]]:
        """Events with ids after `after_id`, waiting up to `block_ms` for the first one (None: not at all)."""
        reply = await self.redis.xread({self.events_key: after_id}, count=count, block=block_ms)
        if not reply:
            return []
        return [
            (entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()}) for entry_id, fields in reply[0][1]
        ]

    async def close(self) -> None:
        await self.redis.aclose()
