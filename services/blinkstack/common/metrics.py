"""Prometheus metrics of all blinkstack services (one registry per process, scraped on the metrics port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RPC_REQUESTS = Counter(
    "blinkstack_rpc_requests_total", "RPCs handled, by service, method and status code", ["service", "method", "code"]
)
RPC_LATENCY = Histogram(
    "blinkstack_rpc_latency_seconds",
    "Server-side RPC latency",
    ["service", "method"],
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)
EYESTATE_CROPS = Counter("blinkstack_eyestate_crops_total", "Eye crops classified (rate() gives crops/s)", ["backend"])
EYESTATE_STATES = Counter(
    "blinkstack_eyestate_states_total", "Eye crops by the state answered: OPEN, CLOSED or UNKNOWN", ["state"]
)
EYESTATE_BATCH_SIZE = Histogram(
    "blinkstack_eyestate_batch_size",
    "Crops per backend inference call (after micro-batching)",
    ["backend"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)

DETECTOR_FRAMES = Counter("blinkstack_detector_frames_total", "Frames run through the face detector (both RPCs)")
DETECTOR_FACES = Histogram(
    "blinkstack_detector_faces_per_frame", "Faces found per frame", buckets=(0, 1, 2, 3, 4, 6, 8, 16, 32)
)
DETECTOR_STAGE_SECONDS = Histogram(
    "blinkstack_detector_stage_seconds",
    "Time per detector stage and frame: prepare (colour, resize), infer (face model), decode (maps -> faces); "
    "flow (landmark optical flow, on frames tracked between detections)",
    ["stage"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
)

AGGREGATOR_OBSERVATIONS = Counter(
    "blinkstack_aggregator_observations_total", "Eye observations fed to the blink engine (accepted, not duplicates)"
)
AGGREGATOR_EVENTS = Counter("blinkstack_aggregator_events_total", "Events emitted", ["type", "phase"])
AGGREGATOR_COMMIT_SECONDS = Histogram(
    "blinkstack_aggregator_commit_seconds",
    "Time to write one batch of state and events to Redis",
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0, 5.0),
)

AGGREGATOR_FRAMES = Counter(
    "blinkstack_aggregator_frames_total", "Camera frames answered by TrackFrames, by status", ["status"]
)
AGGREGATOR_REDIS_RETRIES = Counter(
    "blinkstack_aggregator_redis_retries_total", "Redis calls retried while Redis was unreachable or failing over"
)
AGGREGATOR_REDIS_UP = Gauge("blinkstack_aggregator_redis_up", "1 while Redis answers the readiness ping, else 0")
AGGREGATOR_REDIS_WRITABLE = Gauge(
    "blinkstack_aggregator_redis_writable", "0 while Redis refuses writes (memory full, MISCONF), else 1"
)
AGGREGATOR_SUBSCRIBERS = Gauge("blinkstack_aggregator_subscribers", "SubscribeBlinks calls following events now")
AGGREGATOR_SUBSCRIBER_BACKLOG = Gauge(
    "blinkstack_aggregator_subscriber_backlog_ratio",
    "The fullest subscriber's queue as a share of --subscriber-buffer (1: it is dropped)",
)
AGGREGATOR_SUBSCRIBERS_DROPPED = Counter(
    "blinkstack_aggregator_subscribers_dropped_total", "Subscribers dropped for falling --subscriber-buffer behind"
)
