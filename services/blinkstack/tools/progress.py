"""tqdm progress bars that stay readable in logs.

On a terminal a bar redraws in place. Redirected (CI, `make demo > log`), every redraw would be one more line,
so there the bar is drawn at most once every LOG_INTERVAL_S seconds, plus its final state.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

LOG_INTERVAL_S = 30.0


def progress(iterable: Any = None, **kwargs: Any) -> tqdm:
    """`tqdm(iterable, **kwargs)`, throttled when stderr is not a terminal."""
    if sys.stderr.isatty():
        kwargs.setdefault("dynamic_ncols", True)
    else:
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs.setdefault("maxinterval", LOG_INTERVAL_S)
    return tqdm(iterable, **kwargs)


write = tqdm.write  # print a line without breaking a bar
