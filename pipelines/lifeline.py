"""Processes that must not outlive the build's driver, even when it is SIGKILLed (no cleanup runs).

* A local pool worker asks the kernel for SIGKILL when its parent dies (`die_with_parent`,
  ``prctl(PR_SET_PDEATHSIG)`` on Linux; elsewhere a thread that watches the parent pid). With the
  workers gone, multiprocessing's resource tracker sees its pipe close and exits too.
* A local Ray cluster's head processes already die with the driver, but what the raylet starts
  (agents, workers) outlives it by a minute or more. `Lifeline` is a small watcher process that
  records the driver's new descendants while the driver lives and kills them when the driver's
  end of its stdin pipe closes without a goodbye (``python -m pipelines.lifeline``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
POLL_S = 0.25
GOODBYE = b"bye\n"


def die_with_parent(parent: int) -> None:
    """Exit as soon as the parent process ``parent`` dies, or now if it already has (a spawned
    worker runs this after its imports, which the parent may not have survived)."""
    if os.getppid() != parent:
        os._exit(1)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died just before the request took effect
            os._exit(1)
        return
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="die-with-parent").start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os._exit(1)


class Lifeline:
    """A watcher process for the processes started after it (e.g. a local Ray cluster): it kills
    them if this process dies; `close` (the normal end) lets them be and stops the watcher."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.lifeline", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal is for the driver, not the watcher
        )

    def close(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            try:
                self._proc.stdin.write(GOODBYE)
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
        self._proc.wait(timeout=10)


def _watch(driver: int) -> None:
    """Record the driver's descendants born after this watcher; kill them once stdin closes
    without `GOODBYE` (the driver died)."""
    import psutil

    me = psutil.Process()
    before = {p.pid for p in psutil.Process(driver).children(recursive=True)}
    seen: dict[int, psutil.Process] = {}
    done = threading.Event()
    said: list[bytes] = []

    def read_stdin() -> None:
        said.append(sys.stdin.buffer.read())
        done.set()

    threading.Thread(target=read_stdin, daemon=True).start()
    try:
        root = psutil.Process(driver)
        while not done.wait(POLL_S):
            for child in root.children(recursive=True):
                if child.pid not in before and child.pid != me.pid:
                    seen.setdefault(child.pid, child)
    except psutil.NoSuchProcess:
        done.wait(5)
    if said and said[0].endswith(GOODBYE):
        return
    victims = list(seen.values())
    for proc in list(victims):
        try:
            victims.extend(proc.children(recursive=True))
        except psutil.Error:
            pass
    for proc in victims:
        try:
            proc.kill()  # psutil checks the pid still names the process it recorded
        except psutil.Error:
            pass


if __name__ == "__main__":
    _watch(int(sys.argv[1]))
