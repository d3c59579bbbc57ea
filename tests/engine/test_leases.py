"""Who may take over a run's lease, decided without waiting for its expiry."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from flux import MemoryStorage
from flux.leases import Leases, holder_gone, parse_identity, process_identity
from flux.logger import FluxSilentLogger
from flux.records import Lease

HAS_PROC = bool(process_identity())
needs_proc = pytest.mark.skipif(not HAS_PROC, reason="no /proc here (boot id, pid namespace, stat)")

OURS = "boot-a|pid:[111]|100|5000"


def leases() -> Leases:
    return Leases(MemoryStorage(), FluxSilentLogger(), 30.0)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize(
    ("holder", "now", "gone"),
    [
        ("boot-a|pid:[111]|7|900", None, True),  # same boot and namespace, pid 7 gone
        ("boot-a|pid:[111]|7|900", "1200", True),  # pid 7 is now another process
        ("boot-a|pid:[111]|7|900", "900", False),  # pid 7 is still that process
        ("boot-b|pid:[111]|7|900", None, False),  # another boot: another machine, or a reboot
        ("boot-a|pid:[222]|7|900", None, False),  # another pid namespace: another container
        ("", None, False),  # no identity (Flux 0.1.0, or no /proc): only expiry
        ("garbage", None, False),
        ("boot-a|pid:[111]|x|900", None, False),
        (OURS, None, False),  # this very process: not judged here
    ],
)
def test_the_rule(holder: str, now: str | None, gone: bool) -> None:
    assert holder_gone(holder, OURS, lambda pid: now) is gone


def test_no_identity_of_our_own_proves_nothing() -> None:
    assert not holder_gone("boot-a|pid:[111]|7|900", "", lambda pid: None)


@needs_proc
def test_the_identity_names_boot_namespace_pid_and_start_time() -> None:
    mine = parse_identity(process_identity())
    assert mine is not None
    with open("/proc/sys/kernel/random/boot_id") as f:
        assert mine.boot == f.read().strip()
    assert mine.pid_ns == os.readlink("/proc/self/ns/pid")
    assert mine.pid == os.getpid()
    assert process_identity(os.getpid()) == process_identity()
    assert leases().new().identity == process_identity()


@needs_proc
def test_a_dead_process_of_this_machine_is_a_dead_holder(sleeper: subprocess.Popen[bytes]) -> None:
    mine = leases()
    identity = process_identity(sleeper.pid)
    held = Lease(f"{mine.host}:{sleeper.pid}:x", mine.host, sleeper.pid, 0.0, identity)
    assert mine.dead_holder(held) is None  # alive
    sleeper.kill()
    sleeper.wait()
    assert mine.dead_holder(held) == held.owner
    assert process_identity(sleeper.pid) == ""


@needs_proc
def test_a_reused_pid_does_not_keep_a_dead_holder_alive(sleeper: subprocess.Popen[bytes]) -> None:
    mine = leases()
    boot, ns, _, start = process_identity(sleeper.pid).split("|")
    earlier = f"{boot}|{ns}|{sleeper.pid}|{int(start) - 1}"  # the pid's previous owner
    held = Lease("old", mine.host, sleeper.pid, 0.0, earlier)
    assert mine.dead_holder(held) == "old"


@needs_proc
def test_hostname_and_pid_alone_prove_nothing() -> None:
    """A lease without identity from a pid that does not exist here: a container that shares
    our hostname, or Flux 0.1.0. Only its expiry frees the run."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    mine = leases()
    assert mine.dead_holder(Lease(f"{mine.host}:{proc.pid}:x", mine.host, proc.pid, 0.0)) is None


def test_a_live_process_or_another_host_is_not() -> None:
    mine = leases()
    alive = Lease("other", mine.host, os.getppid(), 0.0, process_identity(os.getppid()))
    elsewhere = Lease("far", "another-host", 999_999, 0.0, "boot-z|pid:[1]|999999|1")
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
    # The same without identity (a lease as Flux 0.1.0's schema stores it)
    assert mine.dead_holder(Lease(held.owner, held.host, held.pid, held.expires_at)) == sibling.owner
