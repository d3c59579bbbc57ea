"""Who may take over a run's lease, decided without waiting for its expiry."""

from __future__ import annotations

import os
import subprocess
import sys

from flux import MemoryStorage
from flux.leases import Leases, pid_alive
from flux.logger import FluxSilentLogger
from flux.records import Lease


def leases() -> Leases:
    return Leases(MemoryStorage(), FluxSilentLogger(), 30.0)


def test_a_dead_process_of_this_host_is_a_dead_holder() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    mine = leases()
    gone = Lease(f"{mine.host}:{proc.pid}:x", mine.host, proc.pid, 0.0)
    assert not pid_alive(proc.pid)
    assert mine.dead_holder(gone) == gone.owner


def test_a_live_process_or_another_host_is_not() -> None:
    mine = leases()
    alive = Lease("other", mine.host, os.getppid(), 0.0)
    elsewhere = Lease("far", "another-host", 999_999, 0.0)
    assert mine.dead_holder(alive) is None
    assert mine.dead_holder(elsewhere) is None
    assert mine.dead_holder(None) is None
    assert mine.dead_holder(mine.new()) is None  # our own


def test_an_engine_of_this_process_is_dead_only_once_closed() -> None:
    mine, sibling = leases(), leases()
    held = sibling.new()
    assert mine.dead_holder(held) is None
    sibling.close()
    assert mine.dead_holder(held) == sibling.owner
