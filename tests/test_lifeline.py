"""A SIGKILLed build leaves no process behind: pool workers, the resource tracker, a local Ray cluster."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import REPO, SAMPLE, write_config

STEPS = ["normalize", "exact_dedup", {"minhash_dedup": {"reduce_partitions": 2}}]


def _kill_mid_build(tmp_path: Path, *args: str) -> dict[psutil.Process, str]:
    """Start a build, SIGKILL it once its first step has finished a few shards; its descendants
    (with their command lines)."""
    root = tmp_path / "data"
    config = write_config(tmp_path / "c.yaml", root, [SAMPLE], STEPS, work_shard_mb=0.02)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.build", "--config", str(config), "--quiet", "--workers", "2", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    driver = psutil.Process(proc.pid)
    seen: dict[psutil.Process, str] = {}

    def record() -> None:
        for child in driver.children(recursive=True):
            try:
                seen[child] = " ".join(child.cmdline())[:100]  # the latest: a fork execs a moment later
            except psutil.Error:
                pass

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        record()
        if len(list(root.glob("work/01-normalize-*/done/process-*.json"))) >= 2:
            break
        time.sleep(0.02)
    record()
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "the build finished before it could be killed"
    return seen


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _left_after(processes: dict[psutil.Process, str], seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    while (alive := [p for p in processes if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    for p in alive:
        try:
            p.kill()  # do not leak them into the rest of the test session
        except psutil.Error:
            pass
    return [f"{p.pid} {processes[p]}" for p in alive]


def test_sigkill_of_a_local_build_leaves_no_worker_or_resource_tracker(tmp_path):
    children = _kill_mid_build(tmp_path)
    assert len(children) >= 3  # two workers and the resource tracker
    assert _left_after(children, 5) == []


@pytest.mark.slow
def test_sigkill_of_a_build_on_its_own_local_ray_cluster_leaves_no_ray_process(tmp_path):
    pytest.importorskip("ray")
    children = _kill_mid_build(tmp_path, "--executor", "ray")
    assert any("raylet" in name for name in children.values())
    assert _left_after(children, 8) == []
