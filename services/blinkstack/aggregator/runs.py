"""The order of a camera stream's frames across restarts of the camera.

A camera numbers its frames (seq) from wherever it starts, usually 0, and tags them with a run id that changes when
it restarts. The aggregator keeps one position per stream that only grows: a run's frames sit at `base + seq`, and a
new run's base is one past the last position of the run before. Everything stored per stream and per track (the
Redis hashes' `seq`, which their Lua script only lets grow) holds positions, so a restarted camera's seq 0 is new
while a re-sent frame of the current run is still a duplicate.

A seq far ahead of its run's last one (or a run that starts far from 0) is refused: one stray frame would otherwise
make every later frame of the stream a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass

from blinkstack.aggregator.store import MAX_SEQ
from blinkstack.common.errors import InvalidInput


@dataclass
class RunOrder:
    run_id: int = 0
    base: int = 0  # position of the current run's seq 0
    last: int = -1  # position of the newest frame taken; -1: none yet

    @classmethod
    def from_stored(cls, stored: dict[str, str]) -> RunOrder:
        """From the stream hash (a stream stored before runs existed is run 0 from position 0)."""
        return cls(int(stored.get("run_id", 0)), int(stored.get("run_base", 0)), int(stored.get("seq", -1)))

    def fields(self) -> dict[str, str]:
        """What the stream hash keeps besides `seq` (= `last`, written by the store's ordered write)."""
        return {"run_id": str(self.run_id), "run_base": str(self.base)}

    def starts_run(self, run_id: int) -> bool:
        return self.last >= 0 and run_id != self.run_id

    def position(self, run_id: int, seq: int, max_jump: int) -> int:
        """Where frame (`run_id`, `seq`) sits; refuses a seq too far ahead (`max_jump` 0: no limit)."""
        if self.last < 0 or self.starts_run(run_id):
            base, newest = self.last + 1, None
        else:
            base, newest = self.base, self.last - self.base
        if max_jump:
            if newest is None and seq > max_jump:
                raise InvalidInput(
                    f"frame.seq {seq} starts run {run_id} more than --max-seq-jump {max_jump} from 0: number a "
                    "camera's frames from 0 in each run"
                )
            if newest is not None and seq - newest > max_jump:
                raise InvalidInput(
                    f"frame.seq {seq} is {seq - newest} ahead of run {run_id}'s last seq {newest} (at most "
                    f"--max-seq-jump {max_jump}); a camera that restarted sends a new run_id"
                )
        if base + seq > MAX_SEQ:
            raise InvalidInput(f"frame.seq {seq}: this stream's frames have used up the seq range; use a new stream id")
        return base + seq

    def advance(self, run_id: int, position: int) -> None:
        """Frame at `position` of run `run_id` taken."""
        if self.last < 0 or run_id != self.run_id:
            self.run_id, self.base = run_id, self.last + 1
        self.last = position
