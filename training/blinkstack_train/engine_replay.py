"""The blink engine's constants chosen leave-one-person-out, by replaying what the stack read.

`evaluate-video` records every frame's readings of every clip (`ClipRun.faces`). The engine is pure, so the
annotated subject's readings can be fed to it again with other constants, offline, in a second per clip. That
makes an honest choice cheap: for each person, every setting of the grid is scored on the *other* people's clips
and the best one (ties: the first in the grid, whose first values are the defaults) judges that person. The
report gives the F1 of those held-out judgements, the constants each person got, and how often each setting
was chosen (their spread is the spread between inner folds).

The replay gives the engine exactly the stack's readings (an UNKNOWN eye is missing evidence, as in the stack)
at the clips' own timestamps; frames where the subject's track is absent are skipped. Replayed with the
stack's own constants it must give the stack's own events: `replay_matches_stack` counts the clips where it
does.
"""

from __future__ import annotations

import itertools
from dataclasses import fields, replace
from typing import Any

from blinkstack.aggregator import engine
from blinkstack.v1 import types_pb2
from blinkstack_train import zju

Event = tuple[str, str, int, int, int]  # as ClipRun.events: type, phase, track id, start frame, end frame


def parse_grid(items: list[str]) -> dict[str, list[float]]:
    """`["blink_min_ms=50,30", "open_level_prior=0,5"]` -> {name: values}; names are EngineConfig fields."""
    known = {f.name for f in fields(engine.EngineConfig)}
    grid: dict[str, list[float]] = {}
    for item in items:
        name, _, values = item.partition("=")
        if name not in known:
            raise ValueError(f"--lopo-grid: {name!r} is not an engine setting (one of: {', '.join(sorted(known))})")
        try:
            grid[name] = [float(v) for v in values.split(",")]
        except ValueError:
            raise ValueError(f"--lopo-grid: {item!r}: expected NAME=V1,V2,... with numbers") from None
        if not grid[name]:
            raise ValueError(f"--lopo-grid: {item!r} has no values")
    return grid


def settings(grid: dict[str, list[float]]) -> list[dict[str, Any]]:
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


def replay(run, config: engine.EngineConfig) -> list[Event]:
    """The events the engine gives for the run's annotated subject (`run` is a ClipRun)."""
    track = run.main_track()
    state = engine.TrackState()
    events: list[Event] = []
    for index, frame in enumerate(run.faces):
        face = next((f for f in frame if f[0] == track), None)
        if face is None:
            continue
        left, right = (
            None if state_ == types_pb2.EYE_STATE_UNKNOWN else prob
            for prob, state_ in ((face[1], face[3]), (face[2], face[4]))
        )
        timestamp = round(index * 1e6 / run.fps)
        state, emitted = engine.step(state, engine.Observation(timestamp, left, right), config)
        for event in emitted:
            if event.type == engine.EventType.DROWSINESS:
                continue
            phase = "STARTED" if event.phase == engine.Phase.STARTED else "ENDED"
            frames = (round(event.start_us * run.fps / 1e6), round(event.end_us * run.fps / 1e6))
            events.append((event.type.name, phase, track, *frames))
    return events


def _score(clips: dict[str, zju.Clip], runs: list, events: dict[str, list[Event]]) -> tuple[float, int]:
    """F1 of BLINK over `runs` with the given events, and their false WINK/LONG_CLOSURE count."""
    total, false = zju.Match(), 0
    for run in runs:
        match, false_here = zju.score_events(clips[run.clip], events[run.clip])
        total, false = total + match, false + sum(false_here.values())
    return total.f1, false


def leave_one_person_out(
    clips: list[zju.Clip], runs: list, grid: dict[str, list[float]], base: engine.EngineConfig
) -> tuple[list, dict[int, dict[str, float]]]:
    """Runs whose events come from constants chosen without their person, and the constants each person got.

    A setting is better when it has the higher F1 on the other people, then fewer false WINK/LONG_CLOSURE
    events; ties keep the earlier setting of the grid."""
    by_name = {c.name: c for c in clips}
    candidates = settings(grid)
    replays = [{run.clip: replay(run, replace(base, **s)) for run in runs} for s in candidates]
    chosen: dict[int, dict[str, float]] = {}
    judged = []
    for person in sorted({run.subject for run in runs}):
        others = [run for run in runs if run.subject != person]
        scores = [_score(by_name, others, events) for events in replays]
        best = max(range(len(candidates)), key=lambda i: (scores[i][0], -scores[i][1], -i))
        chosen[person] = candidates[best]
        judged += [replace(run, events=replays[best][run.clip]) for run in runs if run.subject == person]
    return judged, chosen


def replay_matches_stack(runs: list, base: engine.EngineConfig) -> int:
    """Clips whose replay with the stack's own constants gives exactly the stack's events (WINK, BLINK, LONG;
    `replay` leaves out DROWSINESS)."""
    return sum(replay(run, base) == [e for e in run.events if e[0] != "DROWSINESS"] for run in runs)
