"""Losing a dask worker in the middle of `vidsvd decompose` and of `vidsvd separate`.

A real `dask scheduler` and three `dask worker` processes (one thread each) run on
127.0.0.1; the command runs as its own process through ``--scheduler``.  While it
computes, the test picks a worker busy with the job's tasks and SIGKILLs:

- ``group``: the worker's whole process group, nanny included: the worker is gone
  for good and the run must finish on the two others (a lost machine);
- ``worker``: the worker process only; its nanny starts a new one (a crashed
  worker).  Weaker, but a different path through the scheduler.

The command must exit 0 with results equal to an undisturbed run on the same kind of
cluster, and a watcher polling the store's attributes every few milliseconds must
never see an output marked complete before its content is: whenever it first sees
``complete: true``, the arrays it reads at that moment equal the undisturbed ones.

Nothing in vidsvd handles the loss: the scheduler reschedules the lost worker's tasks
and recomputes the results it held (M's chunks, the sketches, the persisted factors)
from the store, and a task killed while writing a Zarr chunk leaves no half chunk
(zarr's local store writes a temporary file and renames it); the retry writes it
whole.  These tests prove that this holds for the graphs vidsvd builds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import distributed
import numpy as np
import psutil
import pytest

from cluster.client import connect, scheduler_workers
from cluster.options import ClusterOptions
from pipelines.cli import main
from pipelines.synthetic import SceneSpec, write_scene
from storage.derived import open_derived
from storage.factors import open_factors
from tests.cli_process import CliProcess, message_lines
from tests.external_cluster import ExternalCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# 300 frames in chunks of 10: decompose runs ~1400 tasks for about 5 s on three
# one-thread workers, separate writes 30 chunks of each array.
SCENE = SceneSpec(width=160, height=120, n_frames=300, n_objects=3, seed=11)
CHUNK_FRAMES = "10"
FACTORS = "randomized-k5"
RANDOMIZED = ("--method", "randomized")  # the passes under test (the default takes the Gram here)
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class References:
    """Stores of an undisturbed run: video only, video + factors, everything."""

    video_only: Path
    factored: Path
    separated: Path


def _start_cluster(folder: Path) -> ExternalCluster:
    folder.mkdir()
    cluster = ExternalCluster(folder)
    cluster.start_scheduler()
    for name in ("worker-a", "worker-b", "worker-c"):
        cluster.start_worker(name, "600MiB")
    with connect(ClusterOptions(scheduler=cluster.address)) as client:
        client.wait_for_workers(3, timeout=START_TIMEOUT_S)
    return cluster


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> References:
    folder = tmp_path_factory.mktemp("reference")
    video = folder / "scene.mp4"
    write_scene(SCENE, video)
    video_only, factored, separated = (folder / f"{name}.zarr" for name in ("video", "factored", "separated"))
    ingest = ["ingest", str(video), "--store", str(video_only), "--chunk-frames", CHUNK_FRAMES, "--quiet"]
    assert main(ingest) == 0
    cluster = _start_cluster(folder / "cluster")
    try:
        shutil.copytree(video_only, factored)
        scheduler = ("--scheduler", cluster.address)
        assert (
            main(["decompose", "--store", str(factored), "--rank", "5", *RANDOMIZED, "--quiet", *scheduler])
            == 0
        )
        shutil.copytree(factored, separated)
        out = folder / "out"
        separate = ["separate", "--store", str(separated), "--out", str(out), "--foreground", "--quiet"]
        assert main([*separate, *scheduler]) == 0
    finally:
        cluster.stop()
    return References(video_only, factored, separated)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ExternalCluster]:
    started = _start_cluster(tmp_path / "cluster")
    try:
        yield started
    finally:
        started.stop()


# --------------------------------------------------------------------------- the watcher


def _complete(metadata: Path) -> bool | None:
    """The ``complete`` attribute of a Zarr node, None while it does not exist (or is being written)."""
    try:
        return bool(json.loads(metadata.read_text())["attributes"].get("complete"))
    except (OSError, ValueError, KeyError):
        return None


@dataclass
class CompletionWatcher:
    """Polls outputs' ``complete`` attributes; reads each output when it first turns true.

    ``read(name)`` returns the output's content (numpy arrays); it is called at once,
    from the watcher's thread, the first time ``complete: true`` is seen.
    """

    outputs: dict[str, Path]  # name -> its zarr.json
    read: Callable[[str], dict[str, np.ndarray]]
    seen: dict[str, set[bool | None]] = field(default_factory=dict)
    at_completion: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> CompletionWatcher:
        self.seen = {name: set() for name in self.outputs}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.05)  # one more look after the command ended
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def complete_now(self) -> dict[str, bool | None]:
        return {name: _complete(path) for name, path in self.outputs.items()}

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for name, state in self.complete_now().items():
                    self.seen[name].add(state)
                    if state and name not in self.at_completion:
                        self.at_completion[name] = self.read(name)
                time.sleep(0.003)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)


# --------------------------------------------------------------------------- the victim


@dataclass(frozen=True)
class Victim:
    """A worker of the cluster: its address, its nanny's pid (= process group), its own pid."""

    address: str
    nanny: int
    pid: int


def _workers(cluster: ExternalCluster, client: distributed.Client) -> dict[str, Victim]:
    """Every worker of the cluster by address, with the nanny that started it."""
    nannies = {process.pid for process in cluster.processes[1:]}
    found = {}
    for address, pid in client.run(os.getpid).items():
        nanny = psutil.Process(pid).ppid()
        assert nanny in nannies, f"worker {address} was not started by one of the cluster's nannies"
        found[address] = Victim(address, nanny, pid)
    return found


def _busy(client: distributed.Client, address: str, prefix: str = "") -> bool:
    keys = client.processing(workers=[address]).get(address, [])
    return any(str(key[0] if isinstance(key, tuple) else key).startswith(prefix) for key in keys)


def _involved(client: distributed.Client, address: str) -> bool:
    """The worker runs a task of the job or holds one's result (losing it loses work)."""
    return _busy(client, address) or bool(client.has_what(workers=[address]).get(address))


def _kill(how: str, victim: Victim) -> None:
    if how == "group":
        os.killpg(victim.nanny, signal.SIGKILL)
    else:
        os.kill(victim.pid, signal.SIGKILL)


@dataclass(frozen=True)
class Disturbed:
    code: int
    stderr: str
    workers_after: int


def _run_and_kill(
    cluster: ExternalCluster,
    argv: list[str],
    *,
    how: str,
    watcher: CompletionWatcher,
    choose: Callable[[CliProcess, distributed.Client, list[str]], str | None],
) -> Disturbed:
    """Run ``vidsvd ARGV --scheduler ...``; SIGKILL the worker ``choose`` names; return when it ends.

    ``choose(command, client, addresses)`` is polled while the command runs; it returns
    the address of the worker to kill once the run is where the test wants it, and
    None before.  The victim is chosen then, among the workers doing the job's work,
    and not beforehand: the scheduler may leave any one worker idle for a whole short
    run.
    """
    with connect(ClusterOptions(scheduler=cluster.address)) as client:
        workers = _workers(cluster, client)
        chosen: list[str] = []

        def ready() -> bool:
            address = choose(command, client, sorted(workers))
            if address is not None:
                chosen.append(address)
            return address is not None

        with watcher:
            command = CliProcess([*argv, "--scheduler", cluster.address])
            try:
                command.wait_until(ready, timeout_s=120, what="a worker busy mid-run")
                victim = workers[chosen[-1]]
                before_kill = watcher.complete_now()
                _kill(how, victim)
                assert command.running()
                assert not any(before_kill.values()), f"an output was complete before the kill: {before_kill}"
                code = command.wait(timeout_s=240)
            finally:
                command.kill()
        assert (
            not psutil.pid_exists(victim.pid) or psutil.Process(victim.pid).status() == psutil.STATUS_ZOMBIE
        )
        expected = 2 if how == "group" else 3
        client.wait_for_workers(expected, timeout=START_TIMEOUT_S)  # the nanny's new worker, if any
        workers_after = scheduler_workers(client)
        assert victim.address not in workers_after
    assert not watcher.errors, watcher.errors
    scheduler_log = (cluster.folder / "scheduler.log").read_text()
    assert f"Remove worker addr: {victim.address}" in scheduler_log  # the scheduler saw it go
    return Disturbed(code=code, stderr=command.stderr, workers_after=len(workers_after))


def _assert_clean_success(result: Disturbed) -> None:
    assert result.code == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert all(line.startswith("vidsvd: ") for line in message_lines(result.stderr)), result.stderr[-3000:]


# --------------------------------------------------------------------------- decompose


def _factors(store: Path) -> dict[str, np.ndarray]:
    found = open_factors(store, FACTORS)
    return {name: np.asarray(getattr(found, name).compute()) for name in ("U", "s", "Vt")}


def _assert_same_factors(got: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> None:
    np.testing.assert_allclose(got["s"], reference["s"], rtol=1e-5)
    for name, axis in (("U", 0), ("Vt", 1)):
        a, b = got[name].astype(np.float64), reference[name].astype(np.float64)
        signs = np.sign(np.sum(a * b, axis=axis, keepdims=True))  # a component may flip sign
        assert np.all(signs != 0)
        np.testing.assert_allclose(a * signs, b, rtol=0, atol=1e-4 * np.max(np.abs(b)))


@pytest.mark.parametrize("how", ["group", "worker"])
def test_decompose_survives_losing_a_worker(
    references: References, cluster: ExternalCluster, tmp_path: Path, how: str
) -> None:
    store = tmp_path / "store.zarr"
    shutil.copytree(references.video_only, store)
    watcher = CompletionWatcher(
        {FACTORS: store / "factors" / FACTORS / "zarr.json"}, read=lambda _name: _factors(store)
    )

    def mid_run(command: CliProcess, client: distributed.Client, addresses: list[str]) -> str | None:
        progress = command.progress("decompose (randomized)")
        if progress is None or progress[0] < 0.25 * progress[1]:
            return None
        return next((address for address in addresses if _involved(client, address)), None)

    result = _run_and_kill(
        cluster,
        ["decompose", "--store", str(store), "--rank", "5", *RANDOMIZED],
        how=how,
        watcher=watcher,
        choose=mid_run,
    )
    _assert_clean_success(result)
    assert "computing on dask scheduler" in result.stderr and ": 3 workers" in result.stderr
    reference = _factors(references.factored)
    _assert_same_factors(_factors(store), reference)
    # the first time the watcher saw the factors complete, they were already whole
    _assert_same_factors(watcher.at_completion[FACTORS], reference)
    assert result.workers_after == (2 if how == "group" else 3)


# --------------------------------------------------------------------------- separate


def _derived(store: Path, name: str) -> dict[str, np.ndarray]:
    return {name: np.asarray(open_derived(store, name).data.compute())}


def test_separate_survives_losing_a_worker_for_good(
    references: References, cluster: ExternalCluster, tmp_path: Path
) -> None:
    store, out = tmp_path / "store.zarr", tmp_path / "out"
    shutil.copytree(references.factored, store)
    names = ("foreground", "masks")
    watcher = CompletionWatcher(
        {name: store / name / "zarr.json" for name in names}, read=lambda name: _derived(store, name)
    )

    def mid_write(command: CliProcess, client: distributed.Client, addresses: list[str]) -> str | None:
        # chunks already in the store, and the victim writing one of its own
        if not any((store / name / "c").exists() for name in names):
            return None
        return next((address for address in addresses if _busy(client, address, prefix="store-map")), None)

    result = _run_and_kill(
        cluster,
        ["separate", "--store", str(store), "--out", str(out), "--foreground"],
        how="group",
        watcher=watcher,
        choose=mid_write,
    )
    _assert_clean_success(result)
    assert result.workers_after == 2
    for name in names:
        assert watcher.seen[name] >= {False, True}, watcher.seen  # seen partial, then complete
        expected = _derived(references.separated, name)[name]
        np.testing.assert_array_equal(_derived(store, name)[name], expected)
        np.testing.assert_array_equal(watcher.at_completion[name][name], expected)
    threshold = open_derived(store, "masks").record.threshold
    assert threshold == open_derived(references.separated, "masks").record.threshold
    for file_name in ("background.png", "foreground.mp4", "compare.mp4"):
        assert (out / file_name).is_file(), file_name
