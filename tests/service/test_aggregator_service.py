"""The aggregator on a real Redis server and real gRPC servers: ingestion, events, subscriptions, crashes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import grpc
import pytest
import redis

from blinkstack.aggregator.engine import EngineConfig, EventType, Observation
from blinkstack.aggregator.store import KeyLayout
from blinkstack.common.grpc_server import LIVENESS_SERVICE
from blinkstack.local.processes import free_port
from blinkstack.local.redis_server import RedisServer
from blinkstack.v1 import aggregator_pb2, aggregator_pb2_grpc
from tests.helpers import NOT_SERVING, SERVING
from tests.helpers.aggregator import BLINKS, collect, expected_events, messages, observation_messages, shape
from tests.helpers.engine import OPEN_P, run, timeline
from tests.helpers.servers import aggregator_service, serving, wait_for_health


@pytest.fixture(scope="module")
def service(redis_server):
    running = aggregator_service(redis_server.url)
    wait_for_health(running.address, SERVING)
    yield running
    running.close()


def test_published_observations_become_events_subscriptions_and_stats(service):
    observations = timeline(BLINKS)
    summary = service.stub.PublishEyeStateBatches(messages("pub-a", 1, observations, per_message=7), timeout=20)
    assert (summary.accepted, summary.duplicates, summary.late, summary.events) == (len(observations), 0, 0, 5)
    events = collect(service.stub, aggregator_pb2.SubscribeBlinksRequest(stream_ids=["pub-a"], after_id="0"), 5)
    assert shape(events) == expected_events(observations)
    assert {(e.stream_id, e.track_id, e.type) for e in events} == {("pub-a", 1, aggregator_pb2.EVENT_TYPE_BLINK)}
    assert all(e.id and e.key.startswith("pub-a/1/BLINK/ENDED/") for e in events)
    stats = service.stub.GetStats(aggregator_pb2.GetStatsRequest(stream_id="pub-a", track_id=1), timeout=5)
    # 6 closed frames at 30 fps, seen as they come (no smoothing by default): 200 ms each.
    assert stats.blink_count == 5 and stats.mean_blink_duration_ms == pytest.approx(6000 / 30, abs=1)
    assert stats.last_event.type == aggregator_pb2.EVENT_TYPE_BLINK
    assert stats.last_timestamp_us == observations[-1].timestamp_us


def test_one_observation_per_message_gives_the_same_events(service):
    observations = timeline(BLINKS)
    summary = service.stub.PublishEyeStates(observation_messages("single", 1, observations), timeout=20)
    assert (summary.accepted, summary.events) == (len(observations), 5)
    events = collect(service.stub, aggregator_pb2.SubscribeBlinksRequest(stream_ids=["single"], after_id="0"), 5)
    assert shape(events) == expected_events(observations)


def test_duplicates_and_late_observations_change_nothing(service):
    observations = timeline(BLINKS)
    service.stub.PublishEyeStateBatches(messages("pub-dup", 1, observations), timeout=20)
    again = service.stub.PublishEyeStateBatches(messages("pub-dup", 1, observations), timeout=20)
    assert (again.accepted, again.duplicates, again.events) == (0, len(observations), 0)
    late = Observation(observations[3].timestamp_us, OPEN_P, OPEN_P)
    summary = service.stub.PublishEyeStateBatches(messages("pub-dup", 1, [late], first_seq=10_000), timeout=20)
    assert (summary.accepted, summary.late) == (0, 1)
    events = collect(service.stub, aggregator_pb2.SubscribeBlinksRequest(stream_ids=["pub-dup"], after_id="0"), 5)
    assert shape(events) == expected_events(observations)


BAD = {
    "stream id": (aggregator_pb2.EyeObservation(stream_id="a b", track_id=1, timestamp_us=1), "is not 1..128"),
    "track 0": (aggregator_pb2.EyeObservation(stream_id="s", track_id=0, timestamp_us=1), "track_id must be > 0"),
    "no time": (aggregator_pb2.EyeObservation(stream_id="s", track_id=1), "timestamp_us must be set"),
    "nan": (
        aggregator_pb2.EyeObservation(stream_id="s", track_id=1, timestamp_us=1, left_prob_open=float("nan")),
        "left_prob_open: prob_open must be a finite number in [0, 1]",
    ),
    "above one": (
        aggregator_pb2.EyeObservation(stream_id="s", track_id=1, timestamp_us=1, right_prob_open=1.5),
        "right_prob_open",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_observation_is_invalid_argument_and_earlier_ones_are_kept(service, case):
    bad, message = BAD[case]
    stream = f"bad-{case.replace(' ', '-')}"
    good = list(observation_messages(stream, 1, timeline(BLINKS[:4])))
    request = aggregator_pb2.PublishEyeStatesRequest(observations=[*good, bad])
    with pytest.raises(grpc.RpcError) as error:
        service.stub.PublishEyeStateBatches(iter([request]), timeout=20)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details() and f"the {len(good)} observations before it were accepted" in (
        error.value.details()
    )
    stats = service.stub.GetStats(aggregator_pb2.GetStatsRequest(stream_id=stream, track_id=1), timeout=5)
    assert stats.blink_count == 1


def test_too_many_observations_in_one_message_is_invalid_argument(service):
    request = aggregator_pb2.PublishEyeStatesRequest(
        observations=list(observation_messages("big", 1, timeline([(4097, OPEN_P, OPEN_P)])))
    )
    with pytest.raises(grpc.RpcError) as error:
        service.stub.PublishEyeStateBatches(iter([request]), timeout=20)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "4097 observations in one message exceed the limit of 4096" in error.value.details()


def test_get_stats_errors(service):
    with pytest.raises(grpc.RpcError) as error:
        service.stub.GetStats(aggregator_pb2.GetStatsRequest(stream_id="nobody", track_id=7), timeout=5)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as error:
        service.stub.GetStats(aggregator_pb2.GetStatsRequest(stream_id="", track_id=7), timeout=5)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_subscribe_rejects_bad_filters(service):
    for request, message in (
        (aggregator_pb2.SubscribeBlinksRequest(after_id="yesterday"), "after_id"),
        (aggregator_pb2.SubscribeBlinksRequest(stream_ids=["a/b"]), "stream_ids[]"),
        (aggregator_pb2.SubscribeBlinksRequest(types=[42]), "unknown event type"),
    ):
        with pytest.raises(grpc.RpcError) as error:
            list(service.stub.SubscribeBlinks(request, timeout=5))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in error.value.details()


def test_live_subscribers_get_new_events_and_resume_exactly_once(service):
    received: list = []
    request = aggregator_pb2.SubscribeBlinksRequest(stream_ids=["live"], types=[aggregator_pb2.EVENT_TYPE_BLINK])
    listener = threading.Thread(target=lambda: received.extend(collect(service.stub, request, 2)), daemon=True)
    listener.start()
    time.sleep(0.5)  # subscribed before anything is published: it sees only new events
    observations = timeline(BLINKS)
    service.stub.PublishEyeStateBatches(messages("live", 1, observations), timeout=20)
    listener.join(20)
    assert len(received) == 2
    # Disconnected after two events; resuming from the second id yields the other three, once each.
    rest = collect(service.stub, aggregator_pb2.SubscribeBlinksRequest(stream_ids=["live"], after_id=received[1].id), 3)
    assert shape(received + rest) == expected_events(observations)
    assert len({e.id for e in received + rest}) == 5


def test_redis_killed_mid_stream_loses_nothing(tmp_path):
    redis = RedisServer(free_port(), tmp_path / "redis")
    redis.start()
    running = aggregator_service(redis.url, redis_retry_s=30.0)
    try:
        wait_for_health(running.address, SERVING)
        observations = timeline(BLINKS * 4)
        restart_errors: list[BaseException] = []

        def restart_later() -> None:
            time.sleep(1.0)
            try:
                redis.start()
            except BaseException as exc:  # surfaced by the assertion below, not lost in the thread
                restart_errors.append(exc)

        restart = threading.Thread(target=restart_later, daemon=True)

        def stream():
            for i, message in enumerate(observation_messages("crash", 1, observations)):
                if i == len(observations) // 2:
                    time.sleep(0.3)  # let the aggregator commit what it has
                    redis.kill()
                    restart.start()
                yield message

        summary = running.stub.PublishEyeStates(stream(), timeout=60)
        restart.join(10)
        assert not restart_errors
        assert summary.accepted == len(observations) and summary.events == 20
        wait_for_health(running.address, SERVING)
        events = collect(running.stub, aggregator_pb2.SubscribeBlinksRequest(after_id="0"), 20)
        assert shape(events) == expected_events(observations)
        redis.kill()  # and once more, after the fact: everything acknowledged is in the AOF
        redis.start()
        events = collect(running.stub, aggregator_pb2.SubscribeBlinksRequest(after_id="0"), 20)
        assert shape(events) == expected_events(observations)
    finally:
        running.close()
        redis.stop()


def test_health_is_not_serving_while_redis_is_down(tmp_path):
    redis = RedisServer(free_port(), tmp_path / "redis")
    redis.start()
    running = aggregator_service(redis.url, redis_retry_s=1.0)
    try:
        wait_for_health(running.address, SERVING)
        redis.kill()
        wait_for_health(running.address, NOT_SERVING, timeout=10)
        wait_for_health(running.address, SERVING, LIVENESS_SERVICE)  # not ready, but alive: no restart
        with pytest.raises(grpc.RpcError) as error:
            running.stub.PublishEyeStateBatches(messages("down", 1, timeline(BLINKS[:2])), timeout=20)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE and "unreachable" in error.value.details()
        redis.start()
        wait_for_health(running.address, SERVING, timeout=10)
    finally:
        running.close()
        redis.stop()


def test_a_restarted_aggregator_continues_the_stream_from_redis(redis_server):
    observations = timeline(BLINKS * 2)
    half = len(observations) // 2 + 3  # inside a closure: the episode must survive the restart
    first = aggregator_service(redis_server.url)
    wait_for_health(first.address, SERVING)
    first.stub.PublishEyeStateBatches(messages("restart", 1, observations[:half]), timeout=20)
    first.close()
    second = aggregator_service(redis_server.url)
    try:
        wait_for_health(second.address, SERVING)
        # The client re-sends everything: what the first aggregator took counts as duplicates.
        summary = second.stub.PublishEyeStateBatches(messages("restart", 1, observations), timeout=20)
        assert summary.duplicates == half and summary.accepted == len(observations) - half
        events = collect(second.stub, aggregator_pb2.SubscribeBlinksRequest(stream_ids=["restart"], after_id="0"), 10)
        assert shape(events) == expected_events(observations)
        assert [e.type for e in events] == [int(EventType.BLINK)] * 10
    finally:
        second.close()


def test_retention_by_count_and_age(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    by_count = aggregator_service(redis_server.url, redis_prefix="count", events_maxlen=2, stream_events_maxlen=2)
    try:
        wait_for_health(by_count.address, SERVING)
        many = timeline(BLINKS * 50)  # 250 blinks
        by_count.stub.PublishEyeStateBatches(messages("kept", 1, many, per_message=1000), timeout=60)
        # MAXLEN ~ trims whole stream nodes (100 entries), so some but not all old events are gone.
        assert 2 <= client.xlen(KeyLayout("count").events(0)) < 250
        assert 2 <= client.xlen(KeyLayout("count").stream_events("kept")) < 250
    finally:
        by_count.close()
    observations = timeline(BLINKS)
    by_age = aggregator_service(redis_server.url, redis_prefix="age", events_max_age_s=0.001)
    try:
        wait_for_health(by_age.address, SERVING)
        by_age.stub.PublishEyeStateBatches(messages("aged", 1, observations, per_message=1000), timeout=20)
        time.sleep(0.05)
        by_age.stub.PublishEyeStateBatches(messages("aged", 2, observations, per_message=1000), timeout=20)
        events = collect(by_age.stub, aggregator_pb2.SubscribeBlinksRequest(after_id="0"), 5, timeout=5)
        assert {e.track_id for e in events} == {2}  # track 1's events were older than the age limit
    finally:
        by_age.close()


def test_a_subscriber_that_never_reads_does_not_slow_ingestion(service):
    stalled = service.stub.SubscribeBlinks(aggregator_pb2.SubscribeBlinksRequest(after_id="0"), timeout=60)
    try:
        observations = timeline(BLINKS * 40)
        start = time.monotonic()
        summary = service.stub.PublishEyeStateBatches(messages("busy", 1, observations, per_message=500), timeout=30)
        # 200 blinks, and a DROWSINESS event: blinks 23 % of the time is a PERCLOS over the drowsy limit
        assert summary.accepted == len(observations) and summary.events == len(run(observations, EngineConfig())[1])
        assert summary.events == 201
        assert time.monotonic() - start < 20
    finally:
        stalled.cancel()


def test_an_aggregator_killed_mid_stream_loses_nothing_when_the_client_resends(redis_server):
    port = free_port()
    env = {
        **os.environ,
        "BLINKSTACK_AGGREGATOR_PORT": str(port),
        "BLINKSTACK_AGGREGATOR_METRICS_PORT": "0",
        "BLINKSTACK_REDIS_URL": redis_server.url,
    }

    def start() -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-m", "blinkstack.cli", "serve", "aggregator"], env=env)
        wait_for_health(f"127.0.0.1:{port}", SERVING)
        return process

    observations = timeline(BLINKS * 4)
    process = start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)

            def until_killed():
                for i, message in enumerate(observation_messages("killed", 1, observations)):
                    if i == len(observations) // 2:
                        time.sleep(0.3)
                        process.kill()  # SIGKILL: no drain, no goodbye
                    yield message

            with pytest.raises(grpc.RpcError):
                stub.PublishEyeStates(until_killed(), timeout=30)
        process.wait(10)
        process = start()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
            summary = stub.PublishEyeStateBatches(messages("killed", 1, observations), timeout=30)
            assert summary.duplicates > 0 and summary.duplicates + summary.accepted == len(observations)
            request = aggregator_pb2.SubscribeBlinksRequest(stream_ids=["killed"], after_id="0")
            assert shape(collect(stub, request, 20)) == expected_events(observations)
            assert redis.Redis.from_url(redis_server.url).xlen(KeyLayout().stream_events("killed")) == 20  # none twice
    finally:
        process.kill()
        process.wait(10)


def test_events_follow_resumes_from_its_cursor_when_the_aggregator_restarts(redis_server):
    """`events --follow` outlives its aggregator: it re-subscribes after the last event it printed, so every
    stored event is printed once, in order, across the restart."""
    port = free_port()
    first = aggregator_service(redis_server.url, port=port, redis_prefix="follow", grace=0.5)  # subscribers: cut
    wait_for_health(first.address, SERVING)
    command = [sys.executable, "-m", "blinkstack.cli", "events", "--target", first.address, "--follow"]
    follower = subprocess.Popen(
        [*command, "--format", "json", "--after", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    printed: list[dict] = []
    threading.Thread(target=lambda: printed.extend(json.loads(line) for line in follower.stdout), daemon=True).start()

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 30
        while len(printed) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(printed) >= count, f"{len(printed)} of {count} events printed"

    per_stream = len(expected_events(timeline(BLINKS)))
    second = None
    try:
        first.stub.PublishEyeStateBatches(messages("follow-a", 1, timeline(BLINKS), per_message=50), timeout=30)
        wait_for(per_stream)
        first.close()
        first = None
        second = aggregator_service(redis_server.url, port=port, redis_prefix="follow")
        wait_for_health(second.address, SERVING)
        second.stub.PublishEyeStateBatches(messages("follow-b", 1, timeline(BLINKS), per_message=50), timeout=30)
        wait_for(2 * per_stream)
        time.sleep(0.5)  # nothing more may come
        stored = collect(second.stub, aggregator_pb2.SubscribeBlinksRequest(after_id="0"), 2 * per_stream)
    finally:
        follower.kill()
        follower.wait(10)
        for running in (first, second):
            if running is not None:
                running.close()
    assert [e["id"] for e in printed] == [e.id for e in stored]
    assert "resuming after" in follower.stderr.read()


def new_tracks(stream_id: str, first: int, count: int) -> aggregator_pb2.PublishEyeStatesRequest:
    return aggregator_pb2.PublishEyeStatesRequest(
        observations=[
            aggregator_pb2.EyeObservation(
                stream_id=stream_id, track_id=track, seq=1, timestamp_us=1_000_000, left_prob_open=0.9
            )
            for track in range(first, first + count)
        ]
    )


def test_a_full_redis_is_an_outage_reported_as_such_and_recovers_when_space_returns(tmp_path):
    """maxmemory 8 MB, noeviction: new tracks fill it. Writes then get RESOURCE_EXHAUSTED saying so (no Lua, no
    traceback), health goes NOT_SERVING, reads still work; once space is freed, both come back."""
    with RedisServer(free_port(), tmp_path / "redis", maxmemory="8mb") as server:
        aggregator = aggregator_service(server.url, redis_prefix="full")
        try:
            wait_for_health(aggregator.address, SERVING)
            stub = aggregator.stub
            first = 1
            with pytest.raises(grpc.RpcError) as full:
                while first < 200_000:  # ~0.8 kB a track; 5,000 tracks a stream (below the cap)
                    stream = f"filler-{first // 5000}"
                    stub.PublishEyeStateBatches(iter([new_tracks(stream, first, 250)]), timeout=30)
                    first += 250
            assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, full.value.details()
            details = full.value.details()
            assert "refuses writes (OOM: its memory is full)" in details and "redis.call" not in details
            assert "Traceback" not in details and len(details) < 400
            wait_for_health(aggregator.address, NOT_SERVING)
            stats = stub.GetStats(aggregator_pb2.GetStatsRequest(stream_id="filler-0", track_id=1), timeout=10)
            assert stats.track_id == 1  # what was stored stays readable
            client = redis.Redis.from_url(server.url)
            for key in client.scan_iter("full:*filler*", count=1000):
                client.delete(key)
            wait_for_health(aggregator.address, SERVING)
            summary = stub.PublishEyeStateBatches(iter([new_tracks("after", 1, 10)]), timeout=30)
            assert summary.accepted == 10
        finally:
            aggregator.close()


def test_a_stream_holds_at_most_its_cap_of_tracks_and_keeps_those_before(redis_server):
    aggregator = serving(aggregator_service(redis_server.url, redis_prefix="cap", max_tracks_per_stream=5))
    try:
        with pytest.raises(grpc.RpcError) as capped:
            aggregator.stub.PublishEyeStateBatches(iter([new_tracks("capped", 1, 8)]), timeout=30)
        assert capped.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "already holds 5 tracks (--max-tracks-per-stream)" in capped.value.details()
        assert "the 5 observations before it were accepted" in capped.value.details()
        stats = aggregator.stub.GetStats(aggregator_pb2.GetStatsRequest(stream_id="capped", track_id=5), timeout=5)
        assert stats.track_id == 5
        with pytest.raises(grpc.RpcError) as missing:
            aggregator.stub.GetStats(aggregator_pb2.GetStatsRequest(stream_id="capped", track_id=6), timeout=5)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        again = aggregator.stub.PublishEyeStateBatches(iter([new_tracks("capped", 1, 5)]), timeout=30)
        assert again.duplicates == 5  # the tracks it has keep working
        other = aggregator.stub.PublishEyeStateBatches(iter([new_tracks("other", 1, 5)]), timeout=30)
        assert other.accepted == 5  # a cap per stream: the others are not affected
    finally:
        aggregator.close()
