"""The aggregator against a real local 3-master Redis Cluster, with its events in 6 shards: the same ingestion,
subscriptions and fault handling as on one Redis, a master killed and restarted from its AOF included."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest

from blinkstack.aggregator.event_forms import id_order
from blinkstack.aggregator.store import KeyLayout
from blinkstack.local.redis_cluster import LocalRedisCluster
from blinkstack.v1 import aggregator_pb2
from tests.helpers import SERVING
from tests.helpers.aggregator import BLINKS, collect, expected_events, messages, observation_messages, shape
from tests.helpers.engine import timeline
from tests.helpers.servers import aggregator_service, wait_for_health

SHARDS = 6


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    running = LocalRedisCluster(tmp_path_factory.mktemp("cluster"))
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def service(cluster):
    running = aggregator_service(cluster.url, redis_cluster=True, event_shards=SHARDS, redis_prefix="c")
    wait_for_health(running.address, SERVING)
    yield running
    running.close()


def streams_over_all_masters(cluster: LocalRedisCluster, prefix: str, count: int) -> list[str]:
    """`count` stream ids whose shards lie on every master."""
    layout, by_node = KeyLayout(prefix, SHARDS), defaultdict(list)
    for i in range(200):
        stream_id = f"cam-{i}"
        by_node[cluster.node_of(layout.events(layout.shard_of(stream_id))).port].append(stream_id)
    assert len(by_node) == len(cluster.nodes), "the shards do not reach every master"
    chosen = [ids[j] for j in range(count) for ids in by_node.values()]
    return chosen[:count]


def by_stream(events: list) -> dict[str, list]:
    grouped = defaultdict(list)
    for event in events:
        grouped[event.stream_id].append(event)
    return grouped


def test_events_of_all_shards_arrive_once_merged_in_id_order_and_resume_from_a_cursor(cluster, service):
    streams = streams_over_all_masters(cluster, "c", 6)
    observations = timeline(BLINKS)
    for stream_id in streams:
        service.stub.PublishEyeStateBatches(messages(stream_id, 1, observations, per_message=50), timeout=30)
    request = aggregator_pb2.SubscribeBlinksRequest(stream_ids=streams, after_id="0")
    events = collect(service.stub, request, 5 * len(streams))
    assert len({e.id for e in events}) == len(events) and all("@" in e.id for e in events)
    assert [id_order(e.id) for e in events] == sorted(id_order(e.id) for e in events)
    for stream_id, of_stream in by_stream(events).items():
        assert shape(of_stream) == expected_events(observations), stream_id
    # A cursor names every shard's position: resuming from the 11th event gives exactly the rest.
    rest = collect(
        service.stub, aggregator_pb2.SubscribeBlinksRequest(stream_ids=streams, after_id=events[10].cursor), 19
    )
    assert [e.id for e in rest] == [e.id for e in events[11:]]
    assert events[10].cursor.count(",") == SHARDS - 1
    stats = service.stub.GetStats(aggregator_pb2.GetStatsRequest(stream_id=streams[0], track_id=1), timeout=10)
    assert stats.blink_count == 5


def test_a_cursor_of_another_shard_count_is_invalid_argument(service):
    import grpc

    call = service.stub.SubscribeBlinks(aggregator_pb2.SubscribeBlinksRequest(after_id="1-0,2-0"), timeout=5)
    with pytest.raises(grpc.RpcError) as error:
        next(call)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "2 positions" in error.value.details() and f"{SHARDS} shards" in error.value.details()


def test_a_master_killed_mid_stream_loses_nothing_and_the_subscriber_resumes(cluster, tmp_path):
    running = aggregator_service(
        cluster.url, redis_cluster=True, event_shards=SHARDS, redis_prefix="kill", redis_retry_s=30.0
    )
    try:
        wait_for_health(running.address, SERVING)
        streams = streams_over_all_masters(cluster, "kill", 6)
        victim = cluster.node_of(KeyLayout("kill", SHARDS).stream(streams[0]))
        observations = timeline(BLINKS * 2)
        live: list = []
        request = aggregator_pb2.SubscribeBlinksRequest(stream_ids=streams)
        total = 10 * len(streams)
        listener = threading.Thread(target=lambda: live.extend(collect(running.stub, request, total // 2, 60)))
        listener.start()
        time.sleep(0.5)  # subscribed before anything is published

        def publish(stream_id: str) -> aggregator_pb2.PublishSummary:
            def paced():
                for i, message in enumerate(observation_messages(stream_id, 1, observations)):
                    if stream_id == streams[0] and i == len(observations) // 2:
                        time.sleep(0.3)  # let the aggregator commit what it has
                        victim.kill()
                        threading.Timer(1.0, victim.start).start()
                    yield message

            return running.stub.PublishEyeStates(paced(), timeout=60)

        with ThreadPoolExecutor(len(streams)) as pool:
            summaries = list(pool.map(publish, streams))
        assert all(s.accepted == len(observations) and s.events == 10 for s in summaries)
        listener.join(60)
        assert len(live) == total // 2
        # The live subscriber went away after half the events; its last cursor gives exactly the other half.
        rest = collect(
            running.stub,
            aggregator_pb2.SubscribeBlinksRequest(stream_ids=streams, after_id=live[-1].cursor),
            total // 2,
        )
        everything = live + rest
        assert len({e.id for e in everything}) == total
        for stream_id in streams:
            assert shape(by_stream(everything)[stream_id]) == expected_events(observations), stream_id
        victim.kill()  # once more, after the fact: everything acknowledged is in the master's AOF
        victim.start()
        cluster.wait_until_ok()
        stored = collect(running.stub, aggregator_pb2.SubscribeBlinksRequest(stream_ids=streams, after_id="0"), total)
        assert sorted(e.id for e in stored) == sorted(e.id for e in everything)
    finally:
        running.close()
