"""What a training run tells the person watching it: status lines and bars, on the main process only.

A slow phase without output (model conversion, DeepSpeed's C++ op build, the engine set-up, eval,
export) looks like a hang, so each says what it is doing in one line on stderr; lines go through
tqdm so an open bar is redrawn below them instead of being torn.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm import tqdm


def is_main_process() -> bool:
    """Rank 0 (or no launcher at all); known before the process group exists."""
    return os.environ.get("RANK", "0") == "0"


def status(message: str) -> None:
    """One progress line on stderr from the main process."""
    if is_main_process():
        tqdm.write(message, file=sys.stderr)


def bar(total: int, desc: str, unit: str, **kwargs: Any) -> tqdm:
    """A progress bar drawn by the main process only (the other ranks get a silent one)."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not is_main_process(), **kwargs)
