"""Observation timelines as the aggregator's request messages, and subscriptions read back as event shapes."""

from __future__ import annotations

from blinkstack.aggregator.engine import EngineConfig, Observation
from blinkstack.v1 import aggregator_pb2
from tests.helpers.engine import CLOSED_P, OPEN_P, run

BLINKS = [(20, OPEN_P, OPEN_P), (6, CLOSED_P, CLOSED_P)] * 5 + [(20, OPEN_P, OPEN_P)]


def messages(stream_id: str, track_id: int, observations: list[Observation], first_seq: int = 0, per_message: int = 1):
    """PublishEyeStates requests carrying `per_message` observations each."""
    batch: list[aggregator_pb2.EyeObservation] = []
    for observation in observation_messages(stream_id, track_id, observations, first_seq):
        batch.append(observation)
        if len(batch) == per_message:
            yield aggregator_pb2.PublishEyeStatesRequest(observations=batch)
            batch = []
    if batch:
        yield aggregator_pb2.PublishEyeStatesRequest(observations=batch)


def observation_messages(stream_id: str, track_id: int, observations: list[Observation], first_seq: int = 0):
    for i, obs in enumerate(observations):
        message = aggregator_pb2.EyeObservation(
            stream_id=stream_id, track_id=track_id, seq=first_seq + i, timestamp_us=obs.timestamp_us
        )
        if obs.left is not None:
            message.left_prob_open = obs.left
        if obs.right is not None:
            message.right_prob_open = obs.right
        message.track_lost = obs.track_lost
        yield message


def collect(stub, request: aggregator_pb2.SubscribeBlinksRequest, count: int, timeout: float = 20.0) -> list:
    """The first `count` events of a subscription (then it is cancelled)."""
    call = stub.SubscribeBlinks(request, timeout=timeout)
    got = []
    for event in call:
        got.append(event)
        if len(got) == count:
            call.cancel()
            break
    return got


def expected_events(observations: list[Observation]) -> list[tuple[int, int, int]]:
    _, events = run(observations, EngineConfig())
    return [(int(e.type), e.start_us, e.end_us) for e in events]


def shape(events) -> list[tuple[int, int, int]]:
    return [(e.type, e.start_us, e.end_us) for e in events]
