"""Admission control and subscriber fan-out: limits answered with RESOURCE_EXHAUSTED, idle subscribers cost no
Redis connection, and a subscriber that does not read is dropped without holding anyone up."""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time

import grpc
import pytest
import redis

from blinkstack.aggregator import engine, event_forms
from blinkstack.aggregator.store import KeyLayout
from blinkstack.v1 import aggregator_pb2, aggregator_pb2_grpc, eyestate_pb2_grpc
from tests.helpers import SERVING
from tests.helpers.engine import CLOSED_P, OPEN_P, timeline
from tests.helpers.messages import encoded_request
from tests.helpers.servers import aggregator_service, eyestate_args, eyestate_service, health_status, serving

BLINK = timeline([(20, OPEN_P, OPEN_P), (6, CLOSED_P, CLOSED_P), (20, OPEN_P, OPEN_P)])


def observations(stream_id: str, first_seq: int = 0) -> list[aggregator_pb2.EyeObservation]:
    return [
        aggregator_pb2.EyeObservation(
            stream_id=stream_id,
            track_id=1,
            seq=first_seq + i,
            timestamp_us=o.timestamp_us,
            left_prob_open=o.left,
            right_prob_open=o.right,
        )
        for i, o in enumerate(BLINK)
    ]


def test_a_thousand_idle_subscribers_leave_writes_and_readiness_healthy_and_all_get_the_event(redis_server):
    running = serving(aggregator_service(redis_server.url, redis_prefix="many"))
    count = 1000

    async def scenario() -> list[int]:
        async with grpc.aio.insecure_channel(running.address) as channel:
            stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
            calls = [
                stub.SubscribeBlinks(aggregator_pb2.SubscribeBlinksRequest(stream_ids=["many"]), timeout=60)
                for _ in range(count)
            ]
            await asyncio.sleep(3.0)  # every subscription open and idle
            started = time.perf_counter()
            summary = await stub.PublishEyeStates(iter(observations("many")), timeout=20)
            assert summary.accepted == len(BLINK) and summary.events == 1
            assert time.perf_counter() - started < 5.0
            received = await asyncio.gather(*(call.read() for call in calls))
            for call in calls:
                call.cancel()
            return [m.type for m in received]

    try:
        types = asyncio.run(scenario())
        assert types == [aggregator_pb2.EVENT_TYPE_BLINK] * count
        assert health_status(running.address) == SERVING
        connected = redis.Redis.from_url(redis_server.url).info("clients")["connected_clients"]
        assert connected < 20, f"{connected} Redis connections for {count} subscribers"
    finally:
        running.close()


def test_subscribers_over_their_limit_and_calls_over_the_service_limit_are_refused(redis_server):
    running = serving(
        aggregator_service(
            redis_server.url, redis_prefix="limits", max_subscribers=2, max_concurrent_rpcs=1, peer_share=1.0
        )
    )
    try:
        open_calls = [running.stub.SubscribeBlinks(aggregator_pb2.SubscribeBlinksRequest()) for _ in range(2)]
        time.sleep(0.5)
        with pytest.raises(grpc.RpcError) as third:
            next(running.stub.SubscribeBlinks(aggregator_pb2.SubscribeBlinksRequest(), timeout=5))
        assert third.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "2 concurrent SubscribeBlinks calls" in third.value.details()
        # Subscriptions have their own limit: the one other call allowed still gets through.
        request = aggregator_pb2.GetStatsRequest(stream_id="limits", track_id=1)
        with pytest.raises(grpc.RpcError) as missing:
            running.stub.GetStats(request, timeout=5)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND

        gate = threading.Event()  # a publisher held open occupies the one general slot

        def held():
            yield observations("limits")[0]
            while not gate.is_set():
                time.sleep(0.05)

        publishing = running.stub.PublishEyeStates.future(held(), timeout=10)
        time.sleep(0.5)
        with pytest.raises(grpc.RpcError) as busy:
            running.stub.GetStats(request, timeout=5)
        assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        gate.set()
        assert publishing.result().accepted == 1
        for call in open_calls:
            call.cancel()
    finally:
        running.close()


def test_a_subscriber_that_does_not_read_is_dropped_with_the_cursor_to_resume_from(redis_server):
    running = serving(aggregator_service(redis_server.url, redis_prefix="slow", subscriber_buffer=10))
    try:
        call = running.stub.SubscribeBlinks(aggregator_pb2.SubscribeBlinksRequest(), timeout=60)
        time.sleep(0.5)
        store = redis.Redis.from_url(redis_server.url)
        event = engine.Event(engine.EventType.BLINK, engine.Phase.ENDED, 1_000_000, 1_200_000, 0.01)
        pipe = store.pipeline()
        for i in range(5000):  # more than gRPC's flow-control windows hold, so the server's queue fills up
            pipe.xadd(KeyLayout("slow").events(0), event_forms.to_fields(event, "slow", i + 1))
        pipe.execute()
        received = []
        with pytest.raises(grpc.RpcError) as dropped:
            for message in call:
                received.append(message.id)
        assert dropped.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"after_id={received[-1]}" in dropped.value.details()
        assert 0 < len(received) < 5000
        # The others were not held up: a fresh subscriber resumes exactly after the last event received.
        resumed = running.stub.SubscribeBlinks(aggregator_pb2.SubscribeBlinksRequest(after_id=received[-1]))
        assert (
            next(resumed).id
            == store.xrange(KeyLayout("slow").events(0), f"({received[-1]}", "+", count=1)[0][0].decode()
        )
        resumed.cancel()
    finally:
        running.close()


def held_stream(first: aggregator_pb2.EyeObservation, gate: threading.Event):
    """A client stream that sends one message, then nothing until `gate` is set."""
    yield first
    while not gate.is_set():
        time.sleep(0.05)


def test_silent_client_streams_are_ended_and_free_their_slots(redis_server):
    running = serving(
        aggregator_service(
            redis_server.url, redis_prefix="idle", max_concurrent_rpcs=4, stream_idle_s=1.0, peer_share=1.0
        )
    )
    gate = threading.Event()
    try:
        silent = [
            running.stub.PublishEyeStates.future(held_stream(observations(f"idle-{i}")[0], gate), timeout=30)
            for i in range(4)
        ]
        time.sleep(0.3)
        request = aggregator_pb2.GetStatsRequest(stream_id="idle-0", track_id=1)
        with pytest.raises(grpc.RpcError) as busy:
            running.stub.GetStats(request, timeout=5)
        assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # four silent streams hold every slot
        for call in silent:
            error = call.exception(timeout=10)
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert (
                "no message for 1 s" in error.details() and "1 observations before it were accepted" in error.details()
            )
        assert running.stub.GetStats(request, timeout=5).track_id == 1  # the first message was kept
    finally:
        gate.set()
        running.close()


def test_one_greedy_token_gets_its_share_and_the_others_are_still_served(redis_server, tmp_path):
    tokens = tmp_path / "tokens.json"
    entries = [{"name": n, "token": f"tok-{n}", "scopes": ["publish", "stats"]} for n in ("greedy", "other")]
    tokens.write_text(json.dumps({"tokens": entries}))
    running = serving(
        aggregator_service(
            redis_server.url,
            redis_prefix="share",
            max_concurrent_rpcs=4,
            tokens_file=str(tokens),
            allow_plaintext_tokens=True,
        )
    )
    gate = threading.Event()

    def as_(name: str) -> tuple:
        return (("authorization", f"Bearer tok-{name}"),)

    try:
        held = [
            running.stub.PublishEyeStates.future(
                held_stream(observations(f"share-{i}")[0], gate), timeout=30, metadata=as_("greedy")
            )
            for i in range(2)
        ]
        time.sleep(0.3)
        with pytest.raises(grpc.RpcError) as refused:
            running.stub.PublishEyeStates(iter(observations("share-x")), timeout=5, metadata=as_("greedy"))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "token greedy already has 2 concurrent calls in progress, its share of 4" in refused.value.details()
        served = running.stub.PublishEyeStates(iter(observations("share-y")), timeout=10, metadata=as_("other"))
        assert served.accepted == len(BLINK)
        gate.set()
        assert [call.result().accepted for call in held] == [1, 1]
    finally:
        gate.set()
        running.close()


@pytest.mark.parametrize("max_pending", [2, 1000])
def test_a_flood_of_light_calls_beyond_the_backlog_is_refused_at_once_not_queued(max_pending, real_crops):
    """Two-crop calls run inline and never reach the admission limit; the backlog in front of it is what
    `--max-pending-rpcs` bounds. 600 calls at once from one channel: with a backlog of 2, gRPC core refuses some
    before any Python runs; with gRPC's own default (1000) all of them queue and are served."""
    running = serving(eyestate_service(eyestate_args(max_pending_rpcs=max_pending, peer_share=1.0)))
    request = encoded_request(real_crops[:2])

    async def flood() -> collections.Counter:
        async with grpc.aio.insecure_channel(running.address) as channel:
            stub = eyestate_pb2_grpc.EyeStateServiceStub(channel)
            await stub.ClassifyEyes(request, timeout=10)

            async def one() -> str:
                try:
                    await stub.ClassifyEyes(request, timeout=30)
                    return "OK"
                except grpc.aio.AioRpcError as exc:
                    return exc.code().name

            codes = collections.Counter(await asyncio.gather(*(one() for _ in range(600))))
            assert (await stub.ClassifyEyes(request, timeout=10)).results  # served again once the flood is over
            return codes

    try:
        codes = asyncio.run(flood())
        assert set(codes) <= {"OK", "CANCELLED"}, codes  # nothing else: no UNKNOWN, no deadline missed
        assert codes["OK"] > 0
        if max_pending == 2:
            assert codes["CANCELLED"] > 0, codes
        else:
            assert codes["OK"] == 600, codes
        assert health_status(running.address) == SERVING
    finally:
        running.close()
