"""Child processes that end with the service, even when it is killed with SIGKILL.

vLLM runs its engine core (and that, its worker) in processes of its own. A service killed with
SIGKILL cannot stop them, and they would keep their memory, a GPU's included, until someone found
and killed them. So before vLLM starts, `mark_children()` marks the environment the children
inherit; a child then runs a watchdog thread that ends it once its parent is gone:
- a spawned child (vLLM's way on a CPU) imports the service's main module, as multiprocessing's
  spawn does, and so `pure_model_api.cli`, which calls `watch_parent()`;
- a forked child (vLLM's default on a GPU) runs the at-fork hook registered here.
"""

from __future__ import annotations

import os
import signal
import threading
import time

MARK = "PURE_API_SERVICE_PID"


def mark_children() -> None:
    if os.environ.get(MARK) == str(os.getpid()):
        return
    os.environ[MARK] = str(os.getpid())
    os.register_at_fork(after_in_child=_start_watchdog)


def watch_parent() -> None:
    """In a child of the service (marked, and not the service itself), end with the parent."""
    if os.environ.get(MARK) not in (None, str(os.getpid())):
        _start_watchdog()


def _start_watchdog() -> None:
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True, name="lifeline").start()
