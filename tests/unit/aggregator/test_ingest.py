"""GroupCommit (aggregator/ingest.py): concurrent callers share Redis transactions, each gets its own ids, and a
failed transaction fails every caller in it. The store is a stand-in: what is under test is the queueing."""

from __future__ import annotations

import asyncio

import pytest

from blinkstack.aggregator.ingest import GroupCommit
from blinkstack.aggregator.store import StoreUnavailable, Write
from blinkstack.common.errors import Unavailable


class RecordingStore:
    """Applies nothing; records each transaction and answers one id per write."""

    def __init__(self, fail_first: bool = False) -> None:
        self.transactions: list[list[int]] = []
        self.fail_first = fail_first

    async def apply(self, writes: list[Write]) -> list[list[str] | None]:
        self.transactions.append([w.seq for w in writes])
        await asyncio.sleep(0.01)  # in flight: others queue meanwhile
        if self.fail_first and len(self.transactions) == 1:
            raise StoreUnavailable("Redis at redis://x is unreachable")
        return [[f"{w.seq}-0"] for w in writes]


def writes(*seqs: int) -> list[Write]:
    return [Write(f"key-{s}", "cam", s, {"state": "{}"}) for s in seqs]


def test_callers_that_queue_during_a_transaction_share_the_next_one_and_get_their_own_ids():
    store = RecordingStore()
    group = GroupCommit(store)  # type: ignore[arg-type]

    async def scenario() -> list:
        first = asyncio.create_task(group.commit(writes(1)))
        await asyncio.sleep(0)  # the first transaction is in flight
        return await asyncio.gather(first, group.commit(writes(2, 3)), group.commit(writes(4)))

    results = asyncio.run(scenario())
    assert store.transactions == [[1], [2, 3, 4]]
    assert results == [[["1-0"]], [["2-0"], ["3-0"]], [["4-0"]]]


def test_a_transaction_holds_at_most_max_writes_but_never_splits_a_caller():
    store = RecordingStore()
    group = GroupCommit(store, max_writes=3)  # type: ignore[arg-type]

    async def scenario() -> None:
        first = asyncio.create_task(group.commit(writes(1)))
        await asyncio.sleep(0)
        await asyncio.gather(first, group.commit(writes(2, 3)), group.commit(writes(4, 5)), group.commit(writes(6)))

    asyncio.run(scenario())
    assert store.transactions == [[1], [2, 3], [4, 5, 6]]


def test_a_failed_transaction_tells_each_of_its_callers_what_to_resend_and_the_next_one_goes_on():
    store = RecordingStore(fail_first=True)
    group = GroupCommit(store)  # type: ignore[arg-type]

    async def scenario() -> tuple:
        first = asyncio.create_task(group.commit(writes(1)))
        await asyncio.sleep(0)
        later = asyncio.create_task(group.commit(writes(2)))
        with pytest.raises(Unavailable, match="re-send it"):
            await first
        return await later

    assert asyncio.run(scenario()) == [["2-0"]]
