"""The job context: the one dask.distributed Client of a command, and how a job talks to its user.

A command opens one :class:`JobContext`; every step it runs takes it.  The Client is
opened on first use (a step that finds its output complete opens none) and closed
when the context closes, so ``vidsvd run`` starts one cluster for all of its steps.
A command that will compute can start the embedded cluster early, in a thread
(:meth:`JobContext.warm_up`), while it imports, ingests or plans.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import distributed

from cluster.client import connect, dashboard_link, describe, scheduler_workers, worker_memory_limit
from cluster.errors import WorkerEnvironmentError
from cluster.options import ClusterOptions
from cluster.progress import wait_with_progress
from cluster.worker_imports import import_problems
from pipelines.masks import noise_pair_frames, noise_scale_of
from pipelines.planning import ClusterSize, keeps_in_memory
from storage.errors import StoreNotSharedError
from storage.store import StoreLocation, store_problem
from storage.video_array import StoredVideo

if TYPE_CHECKING:
    import dask.array as da

__all__ = ["PROJECT_PACKAGES", "WORKER_MODULES", "JobContext", "step_context"]

WORKER_MODULES: Final = (
    "dask.array",
    "zarr",
    "storage.integrity",
    "storage.derived",
    "storage.factors",
    "pipelines.fused_svd",
    "pipelines.gram_svd",
    "pipelines.background_models",
    "pipelines.median_counts",
    "pipelines.frame_gains",
    "pipelines.registration",
    "pipelines.matrix",
    "pipelines.separate",
    "pipelines.factor_masks",
    "pipelines.metrics",
)
"""The modules of every step's tasks: what the embedded workers import as they start,
and what the workers of a remote cluster must be able to import before a task is sent
(:meth:`JobContext.require_workers_import`).

A worker that imports them on its first task instead holds that task back by the
import's time (README, "Embedded (the default)")."""

PROJECT_PACKAGES: Final = ("cluster", "pipelines", "storage")
"""vidsvd's own packages: a remote worker's loaded modules of these must have this
machine's source (:meth:`JobContext.require_workers_import`)."""

_LISTED_WORKERS = 4
"""Workers named in the error when some cannot import the tasks or see the store; the rest are counted."""


@dataclass(kw_only=True)
class JobContext:
    """Where a command computes and how it reports.

    Parameters
    ----------
    cluster : ClusterOptions
        The cluster to open on first use (default: an embedded LocalCluster, whose one
        worker may run in this process: see :func:`cluster.embedded.plan_embedded`).
    progress : bool
        Show progress bars on stderr.
    log : callable or None
        Receives one-line messages for the user; None drops them.

    Notes
    -----
    Use it as a context manager (``with JobContext(...) as context:``); a step given
    no context makes its own and closes it when it returns.
    """

    cluster: ClusterOptions = field(default_factory=ClusterOptions)
    progress: bool = True
    log: Callable[[str], None] | None = None
    _client: distributed.Client | None = field(default=None, init=False, repr=False)
    _opened: ExitStack = field(default_factory=ExitStack, init=False, repr=False)
    _checked: set[tuple[str, bool]] = field(default_factory=set, init=False, repr=False)
    _imports_checked: bool = field(default=False, init=False, repr=False)
    _announced: bool = field(default=False, init=False, repr=False)
    _starting: _ClusterStart | None = field(default=None, init=False, repr=False)
    _held: dict[tuple[str, str], da.Array] = field(default_factory=dict, init=False, repr=False)
    _noise: dict[tuple[str, str, str], Any] = field(default_factory=dict, init=False, repr=False)
    _warned: set[tuple[str, ...]] = field(default_factory=set, init=False, repr=False)
    connections: int = field(default=0, init=False)
    """How many Clients this context has opened (one at most: tests check it)."""

    def say(self, message: str) -> None:
        """Tell the user ``message`` (one line), unless the context is quiet."""
        if self.log is not None:
            self.log(message)

    def warn_once(self, key: tuple[str, ...], message: str) -> None:
        """Issue ``message`` as a ``RuntimeWarning`` the first time this context meets ``key``.

        For what belongs to a video rather than to one step or model (a camera that
        moved): a command that measures it several times says it once.
        """
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    @property
    def remote(self) -> bool:
        """True when the workers are not this machine's embedded cluster."""
        return bool(self.cluster.scheduler or self.cluster.batch)

    def warm_up(self) -> None:
        """Start the embedded cluster now, in a thread; :meth:`client` takes it when ready.

        For a command that will compute: the worker processes start and import their
        modules while this process goes on (imports, an ingest, planning), instead of
        after.  Does nothing with an existing scheduler or a batch cluster (connecting
        is quick, or the batch start reports as it goes), or once a Client exists.  An
        error of the start is raised by :meth:`client`; a cluster nobody used is closed
        with the context.
        """
        if self._client is not None or self._starting is not None or self.remote:
            return
        self._starting = _ClusterStart(self.cluster)
        self._opened.callback(self._starting.close)

    def client(self) -> distributed.Client:
        """The command's Client, connected on first call and reused after (says nothing)."""
        if self._client is None:
            if self._starting is not None:
                self._client = self._starting.result()
            else:
                connection = connect(self.cluster, import_on_start=WORKER_MODULES)
                self._client = self._opened.enter_context(connection)
            self.connections += 1
        return self._client

    def computing_on(self, location: StoreLocation) -> distributed.Client:
        """The Client, once every worker is known to see the store; says where it computes, once.

        Raises
        ------
        WorkerEnvironmentError, StoreNotSharedError
            See :meth:`require_workers_see`; nothing is printed before it.
        """
        client = self.client()
        self.require_workers_see(location)
        if not self._announced:
            self._announced = True
            self.say(f"computing on {describe(client)}")
            link = dashboard_link(client)
            if link and self.remote:
                self.say(f"dashboard: {link}")
        return client

    def cluster_size(self) -> ClusterSize:
        """The workers, their threads and the smallest worker memory limit, as the planners need them."""
        client = self.client()
        workers = scheduler_workers(client).values()
        return ClusterSize(
            n_workers=len(workers),
            threads=sum(int(worker.get("nthreads", 1)) for worker in workers),
            worker_memory_bytes=worker_memory_limit(client),
        )

    def frames_to_read(self, video: StoredVideo) -> da.Array:
        """The video's frames for a pass over them: held in worker memory while they fit.

        The first call for a video whose float32 matrix fits the cluster's memory (see
        :func:`pipelines.planning.keeps_in_memory`) persists its uint8 frames on the
        workers, read once from the store with their checksums; every later pass of
        this context (the SVD's, the background fit's, the separation's, the report's)
        takes them from there until the context closes.  A video that does not fit is
        read from the store at every pass; the cluster is asked once per video.  Held
        frames are found again by the store's URL and the video's fingerprint, so
        another video at the same place is read anew.  A worker lost with held chunks
        reads them again when a task needs them.

        Returns
        -------
        dask.array.Array
            ``video.frames``, or the same array (same keys and chunks) persisted.
        """
        key = (video.location.url, video.fingerprint)
        if key not in self._held:  # decided once per context: every later step reads the same way
            fits = keeps_in_memory(matrix_bytes=4 * int(video.frames.nbytes), cluster=self.cluster_size())
            self._held[key] = self.client().persist(video.frames) if fits else video.frames
        return self._held[key]

    def noise_scale(self, video: StoredVideo, frames: da.Array) -> Any:
        """A future of :func:`pipelines.masks.noise_scale_of` of ``frames`` (of ``video``), once per context.

        The per-pixel noise of the frame pairs :func:`pipelines.masks.noise_pair_frames`
        picks depends on the frames alone: the robust fit and the separation after it
        measure the masks' threshold on the same pairs, which are read and measured
        once.  Keyed by the video's URL and fingerprint and the frames' dask name (a
        window of the video has its own).  None for frames without a pair.
        """
        firsts = noise_pair_frames(int(frames.shape[0]))
        if firsts.size == 0:
            return None
        key = (video.location.url, video.fingerprint, str(frames.name))
        if key not in self._noise:
            self._noise[key] = self.client().compute(noise_scale_of(frames, firsts))
        return self._noise[key]

    def frames_to_fetch(self, video: StoredVideo) -> da.Array:
        """The video's frames for a few frames' read: held ones when this context holds them.

        Unlike :meth:`frames_to_read` it never holds them for such a read.  A graph
        must not mix the held frames' keys with the stored frames' (the same keys,
        read another way: distributed warns of, and may fail on, such a graph).
        """
        return self._held.get((video.location.url, video.fingerprint), video.frames)

    def wait(self, futures: Collection[Any], *, description: str, frames: int | None = None) -> None:
        """Wait for ``futures`` of the Client with a progress bar (when shown), in frames if given.

        Raises
        ------
        WorkersLostError
            The cluster had no worker for :attr:`ClusterOptions.workerless_timeout_s`.
        """
        self._wait(futures, description=description, show=self.progress, frames=frames)

    def fetch(self, *collections: Any) -> list[Any]:
        """Compute dask collections on the cluster and return their values here, without a bar.

        What ``client.compute(..., sync=True)`` does, with the bound of :meth:`wait` on a
        cluster left without workers.  For small results (factors, images, samples):
        every value is gathered into this process.

        Raises
        ------
        WorkersLostError
            See :meth:`wait`; the computation is cancelled.
        """
        return self.gather(self.client().compute(list(collections)))

    def gather(self, futures: Sequence[Any]) -> list[Any]:
        """Wait for ``futures`` as :meth:`wait` does, without a bar, and return their values here.

        Raises
        ------
        WorkersLostError
            See :meth:`wait`; the futures are cancelled.
        """
        self._wait(futures, description="", show=False)
        return list(self.client().gather(list(futures)))

    def _wait(
        self, futures: Collection[Any], *, description: str, show: bool, frames: int | None = None
    ) -> None:
        wait_with_progress(
            self.client(),
            list(futures),
            description=description,
            show=show,
            frames=frames,
            workerless_timeout_s=self.cluster.workerless_timeout_s,
        )

    def require_workers_import(self) -> None:
        """Refuse to compute when some workers of a remote cluster would not run this machine's tasks.

        The embedded workers run this machine's Python; those of an existing scheduler
        or of batch jobs may run another environment, where a task they cannot unpickle
        stops them at once and leaves the computation waiting, and where another
        version of vidsvd would compute with other code than this machine's.  Each
        worker imports :data:`WORKER_MODULES` and compares the source of its loaded
        modules of :data:`PROJECT_PACKAGES` with this machine's, once per context (see
        :mod:`cluster.worker_imports`).

        Raises
        ------
        WorkerEnvironmentError
            Naming the workers, the module and what to do.
        """
        if not self.remote or self._imports_checked:
            return
        problems = import_problems(self.client(), WORKER_MODULES, packages=PROJECT_PACKAGES)
        failing = sorted(address for address, problem in problems.items() if problem)
        if not failing:
            self._imports_checked = True
            return
        raise WorkerEnvironmentError(
            f"{_some_workers(failing, total=len(problems))}"
            f" cannot run vidsvd's tasks as this machine would ({problems[failing[0]]}); install the"
            " same vidsvd and libraries on every worker as on this machine"
        )

    def require_workers_see(self, location: StoreLocation, *, must_exist: bool = True) -> None:
        """Refuse to compute when some workers of a remote cluster cannot use the store.

        The workers of an embedded cluster share this machine's filesystem and
        environment; those of an existing scheduler or of batch jobs may run
        elsewhere, where a local path may not exist and object-storage credentials
        may be missing.  Each worker
        runs :func:`storage.store.store_problem` on the store as this process resolved
        it (a local path made absolute here): one small call per worker, once per
        store and context, after :meth:`require_workers_import`.

        Raises
        ------
        WorkerEnvironmentError
            See :meth:`require_workers_import`.
        StoreNotSharedError
            Naming the workers, what they found, and what to do.
        """
        if not self.remote or (str(location), must_exist) in self._checked:
            return
        self.require_workers_import()
        shared = StoreLocation(url=str(location.local_path)) if location.is_local else location
        answers = self.client().run(store_problem, shared, must_exist=must_exist, on_error="return")
        problems = {
            address: answer if isinstance(answer, str) or answer is None else _failed_check(answer)
            for address, answer in answers.items()
        }
        failing = sorted(address for address, problem in problems.items() if problem)
        if not failing:
            self._checked.add((str(location), must_exist))
            return
        reason = problems[failing[0]]
        who = _some_workers(failing, total=len(problems))
        if location.is_local:
            raise StoreNotSharedError(
                f"{who} cannot see the store {shared}: {reason}; put the store on a filesystem every "
                "worker mounts at the same path, or on object storage (--store s3://bucket/path.zarr)"
            )
        raise StoreNotSharedError(
            f"{who} cannot use the store {shared}: {reason} (on the workers: give them the credentials "
            "and endpoint this machine uses)"
        )

    def close(self) -> None:
        """Close the Client and any cluster this context started."""
        self._held.clear()
        self._noise.clear()
        self._client = None
        self._starting = None
        self._opened.close()

    def __enter__(self) -> JobContext:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._held.clear()
        self._noise.clear()
        self._opened.__exit__(exc_type, exc, traceback)
        self._client = None
        self._starting = None


class _ClusterStart:
    """:func:`cluster.client.connect` entered in a thread; its Client or error, and its closing."""

    def __init__(self, options: ClusterOptions) -> None:
        self._opened = ExitStack()
        self._client: distributed.Client | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, args=(options,), name="vidsvd-cluster-start")
        self._thread.start()

    def _start(self, options: ClusterOptions) -> None:
        try:
            self._client = self._opened.enter_context(connect(options, import_on_start=WORKER_MODULES))
        except BaseException as error:  # handed to the thread that asks for the client
            self._error = error

    def result(self) -> distributed.Client:
        """The Client once the cluster runs; the start's exception if it failed."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._client is not None
        return self._client

    def close(self) -> None:
        """Wait for the start to end, then close what it opened (the Client, the cluster)."""
        self._thread.join()
        self._opened.close()


@contextmanager
def step_context(context: JobContext | None) -> Iterator[JobContext]:
    """Yield ``context``, or a default :class:`JobContext` that closes when the step ends."""
    if context is not None:
        yield context
        return
    with JobContext() as own:
        yield own


def _some_workers(failing: list[str], *, total: int) -> str:
    """``2 of 3 dask workers (tcp://a, tcp://b)``, naming at most a few."""
    listed = ", ".join(failing[:_LISTED_WORKERS])
    if len(failing) > _LISTED_WORKERS:
        listed += f" and {len(failing) - _LISTED_WORKERS} more"
    return f"{len(failing)} of {total} dask workers ({listed})"


def _failed_check(error: BaseException) -> str:
    if isinstance(error, ImportError):
        return f"the check could not run there ({error}); install vidsvd on every worker"
    return f"the check failed there ({type(error).__name__}: {error})"
