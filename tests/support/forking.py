"""Forking a test process that has run video code (for runs as another user)."""

from __future__ import annotations

import gc
import os


def fork_quietly() -> int:
    """os.fork() with the garbage collector kept away from what the child inherits.

    A child must not collect objects of its parent: a PyAV frame whose scaler owns FFmpeg slice
    threads waits forever on those threads when freed, and the threads did not come along into
    the child. Garbage is collected before the fork and everything else frozen for the child.
    """
    gc.collect()
    gc.freeze()
    pid = os.fork()
    if pid != 0:
        gc.unfreeze()
    return pid
