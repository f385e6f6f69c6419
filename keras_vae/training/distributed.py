"""Training on several devices or machines: ``train.strategy`` = auto | none | mirrored | multiworker.

    auto / none   one process, TensorFlow's default strategy (auto only adds a log line when
                  TF_CONFIG is set, so a stray variable never changes what a run does)
    mirrored      tf.distribute.MirroredStrategy over this machine's GPUs (or its CPU)
    multiworker   tf.distribute.MultiWorkerMirroredStrategy; the cluster comes from TF_CONFIG, as
                  TensorFlow documents it:
                  {"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type": "worker", "index": 0}}

Every replica sees ``batch_size / replicas`` examples of each global batch (the tf.data pipeline is
sharded by DATA: each worker reads the whole pipeline and keeps its slice of every batch), so a run
optimises the same loss as one process with the same ``batch_size``: the models average per-example
losses over the global batch (``tf.nn.compute_average_loss``), Keras' optimizers all-reduce the
gradients, the VAEGAN all-reduces its population-KL moments and, with ``model.sync_batch_norm``,
its BatchNorm statistics.

Keras 3.15's ``fit`` under MultiWorkerMirroredStrategy reduces every scalar log with
``strategy.reduce("MEAN", v, axis=0)``, which fails for rank-0 values (keras-team/keras#20585).
``install_fit_fix`` reduces those scalars with ``axis=None`` (an all-reduce: the mean over the
replicas) and leaves every other value, and every other strategy, to Keras. Under any strategy, Keras'
``fit`` also iterates the dataset once to build the model, so training starts on the dataset's
second iteration, another shuffle order than one process's (``install_build_fix`` skips that when
everything is built, as ``fit`` does without a strategy).

Only the chief (task ``chief``:0, or ``worker``:0 when the cluster has no chief) writes the run
folder; the other workers train identically into a temporary folder that is deleted at the end (as
TensorFlow's multi-worker guide does) and resume from the chief's checkpoint, which they read from the
shared ``--out`` folder. No TensorFlow import at module level (the CLI validates TF_CONFIG first).
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keras_vae.choices import STRATEGIES
from keras_vae.errors import ConfigError, KerasVAEError, choices
from keras_vae.training import peers as peer_checks
from keras_vae.utils.quiet import original_stderr
from keras_vae.utils.validation import short

log = logging.getLogger(__name__)

JOBS = ("chief", "worker")  # the job types MultiWorkerMirroredStrategy trains with
HEARTBEAT_TIMEOUT_S = 30  # a task silent this long counts as lost (TensorFlow's default: 10 s)
# the formation watcher ends the process at 2 * --peer-timeout + this if TensorFlow still waits (its registration
# timeout ends the wait first: after --peer-timeout on the leader, after about twice that on the others)
GIVE_UP_GRACE_S = 30
TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')


class DistributedError(ConfigError):
    """A strategy, TF_CONFIG or batch size that cannot be used for distributed training."""


@dataclass(frozen=True)
class Cluster:
    """The cluster of a TF_CONFIG: addresses per job, and which task this process is."""

    jobs: dict[str, tuple[str, ...]]
    task_type: str
    task_index: int

    @property
    def num_workers(self) -> int:
        """Processes that train (chief and workers)."""
        return sum(len(self.jobs.get(job, ())) for job in JOBS)

    @property
    def is_chief(self) -> bool:
        """True for the task that writes the run folder: chief:0, or worker:0 without a chief job."""
        if "chief" in self.jobs:
            return self.task_type == "chief"
        return self.task_index == 0

    @property
    def address(self) -> str:
        """This task's own host:port."""
        return self.jobs[self.task_type][self.task_index]

    @property
    def name(self) -> str:
        return f"{self.task_type}:{self.task_index}"

    @property
    def peers(self) -> list[tuple[str, str]]:
        """(name, address) of every other task, chief first: ('worker:1', 'host1:12345')."""
        return [(f"{job}:{i}", address) for job in JOBS for i, address in enumerate(self.jobs.get(job, ()))
                if (job, i) != (self.task_type, self.task_index)]


def _bad(why: str) -> DistributedError:
    return DistributedError(f"TF_CONFIG {why}; expected e.g. {TF_CONFIG_EXAMPLE}")


def _check_address(job: str, i: int, address: Any) -> str:
    if not isinstance(address, str) or address.count(":") < 1:
        raise _bad(f"cluster {job!r} entry {i} is {short(address)}, not a 'host:port' string")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _bad(f"cluster {job!r} entry {i} {short(address)} needs a host and a port in 1..65535")
    return address


def parse_tf_config(text: str | None) -> Cluster:
    """The Cluster that the TF_CONFIG JSON ``text`` describes; DistributedError (one line) when it
    is missing or cannot be used by MultiWorkerMirroredStrategy."""
    if text is None or not text.strip():
        raise DistributedError(
            "--strategy multiworker needs the TF_CONFIG environment variable on every worker, e.g. "
            f"TF_CONFIG='{TF_CONFIG_EXAMPLE}' (the same cluster everywhere, each worker its own index)")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise _bad(f"is not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, Mapping):
        raise _bad(f"must be a JSON object, got {short(value)}")
    cluster, task = value.get("cluster"), value.get("task")
    if not isinstance(cluster, Mapping) or not cluster:
        raise _bad("has no 'cluster' object")
    others = sorted(str(k) for k in cluster if k not in JOBS)
    if others:
        raise _bad(f"lists job {short(others[0])}: MultiWorkerMirroredStrategy trains with {choices(JOBS)} "
                   "jobs only (no parameter servers or evaluators)")
    jobs: dict[str, tuple[str, ...]] = {}
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise _bad(f"cluster {job!r} must be a non-empty list of 'host:port' strings, got {short(addresses)}")
        jobs[job] = tuple(_check_address(job, i, a) for i, a in enumerate(addresses))
    if len(jobs.get("chief", ())) > 1:
        raise _bad(f"cluster 'chief' lists {len(jobs['chief'])} addresses: there is one chief")
    every = [a for job in JOBS for a in jobs.get(job, ())]
    repeated = sorted({a for a in every if every.count(a) > 1})
    if repeated:
        raise _bad(f"lists the address {repeated[0]!r} twice: give every task its own host:port")
    if not isinstance(task, Mapping):
        raise _bad("has no 'task' object ({'type': 'worker', 'index': i}): which task is this process?")
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in jobs:
        raise _bad(f"task type {short(task_type)} is not a job of the cluster: choose {choices(sorted(jobs))}")
    if isinstance(index, bool) or not isinstance(index, int):
        raise _bad(f"task index {short(index)} is not an integer")
    if not 0 <= index < len(jobs[task_type]):
        raise DistributedError(
            f"TF_CONFIG task index {index} is out of range: cluster {task_type!r} has {len(jobs[task_type])} "
            f"address(es), so the index must be in 0..{len(jobs[task_type]) - 1} (one per process)")
    return Cluster(jobs=jobs, task_type=str(task_type), task_index=int(index))


def check_port_free(cluster: Cluster) -> None:
    """DistributedError when this task's port is already taken here (e.g. two processes started with the
    same task index); TensorFlow would otherwise abort or wait forever."""
    port = int(cluster.address.rpartition(":")[2])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("", port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return  # e.g. no permission to probe: let TensorFlow decide
            raise DistributedError(
                f"TF_CONFIG task {cluster.name} should listen on {cluster.address}, but port {port} is in use "
                "on this machine: is another worker running with the same task index? Give each process its "
                "own index (and stop leftover workers)") from None


def check_global_batch(batch_size: int, replicas: int) -> None:
    """DistributedError unless the global ``batch_size`` splits evenly over ``replicas``."""
    if replicas > 1 and batch_size % replicas:
        low = max(replicas, batch_size - batch_size % replicas)
        raise DistributedError(
            f"batch_size {batch_size} is the global batch and must split evenly over the {replicas} replicas: "
            f"choose a multiple of {replicas} (e.g. {low} or {low + replicas})")


@dataclass
class Distribution:
    """The strategy a run trains under and this process's role (``is_chief``: it writes the run folder)."""

    name: str  # none | mirrored | multiworker
    strategy: Any = None  # a tf.distribute.Strategy, or None for the default one
    cluster: Cluster | None = None

    @property
    def is_chief(self) -> bool:
        return self.cluster is None or self.cluster.is_chief

    @property
    def replicas(self) -> int:
        return 1 if self.strategy is None else int(self.strategy.num_replicas_in_sync)

    def scope(self):
        """Build and compile the model inside this (variables become distributed ones)."""
        return contextlib.nullcontext() if self.strategy is None else self.strategy.scope()

    def prepare(self, dataset):
        """``dataset`` with DATA auto-sharding under multiworker (each worker keeps its slice of every
        global batch; FILE sharding would give workers different files, so other batches)."""
        if self.name != "multiworker" or dataset is None:
            return dataset
        import tensorflow as tf

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return dataset.with_options(options)

    def describe(self) -> str:
        if self.strategy is None:
            return "one process, default strategy"
        role = "" if self.cluster is None else (
            f", task {self.cluster.name} of {self.cluster.num_workers} workers"
            f" ({'chief: writes the run folder' if self.is_chief else 'writes to a temporary folder'})")
        return f"{self.name}: {self.replicas} replica(s){role}"


_CACHE: dict[str, Distribution] = {}  # a process creates its multi-worker strategy once (TF allows no second)


def make_distribution(name: str, batch_size: int | None = None, environ: Mapping[str, str] | None = None,
                      peer_timeout: float | None | str = "") -> Distribution:
    """The Distribution for strategy ``name`` (created once per process and reused), after checking
    TF_CONFIG (multiworker) and that ``batch_size`` splits over the replicas. ``environ`` is what the
    checks read (default os.environ); TensorFlow itself always reads os.environ["TF_CONFIG"].
    ``peer_timeout``: seconds a multi-worker task waits for the cluster to form (None: no limit; '':
    $KERAS_VAE_PEER_TIMEOUT, else 300), then PeerTimeoutError names the tasks that never joined."""
    if name not in STRATEGIES:
        raise DistributedError(f"unknown strategy {short(name)}: choose {choices(STRATEGIES)}")
    environ = os.environ if environ is None else environ
    if name in ("auto", "none"):
        if name == "auto" and environ.get("TF_CONFIG"):
            log.warning("TF_CONFIG is set but the strategy is 'auto': training in this process alone "
                        "(pass --strategy multiworker to join the cluster)")
        return Distribution("none")
    cluster, timeout = None, None
    if name == "multiworker":
        cluster = parse_tf_config(environ.get("TF_CONFIG"))
        timeout = peer_checks.peer_timeout(peer_timeout, environ)
        if batch_size is not None:  # each worker holds at least one replica: fail before TensorFlow starts
            check_global_batch(int(batch_size), cluster.num_workers)
    if name not in _CACHE:
        if cluster is not None:
            check_port_free(cluster)
        _CACHE[name] = _create(name, cluster, timeout)
    dist = _CACHE[name]
    if batch_size is not None:
        check_global_batch(int(batch_size), dist.replicas)
    return dist


def _create(name: str, cluster: Cluster | None, timeout: float | None = None) -> Distribution:
    import tensorflow as tf

    install_build_fix()
    if name == "mirrored":
        return Distribution("mirrored", tf.distribute.MirroredStrategy())
    if len(_CACHE):
        raise DistributedError("this process already uses another strategy: MultiWorkerMirroredStrategy must be "
                               "the first one a process creates (start a new process)")
    _configure_coordination(cluster, timeout)
    every = peer_checks.REPORT_EVERY_S if timeout is None else min(peer_checks.REPORT_EVERY_S, max(1.0, timeout / 4))
    log.info("multiworker: task %s joining the cluster of %d workers (peers: %s)", cluster.name,
             cluster.num_workers, peer_checks.named(cluster.peers))
    started = time.monotonic()
    try:
        with peer_checks.formation_watched(
                cluster.name, cluster.peers, timeout, every_s=every, stderr=original_stderr(),
                give_up_after_s=None if timeout is None else 2 * timeout + GIVE_UP_GRACE_S):
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as exc:
        raise DistributedError(
            f"cannot start MultiWorkerMirroredStrategy ({short(str(exc), 200)}): it must be created before "
            "TensorFlow runs anything in the process (run 'keras-vae train --strategy multiworker' as its own "
            "process)") from None
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError, tf.errors.AbortedError) as exc:
        log.debug("the cluster did not form: %s", exc)  # TensorFlow's registration timeout (_configure_coordination)
        raise peer_checks.PeerTimeoutError(peer_checks.timeout_message(
            cluster.name, cluster.peers, timeout, time.monotonic() - started)) from None
    install_fit_fix()
    log.info("multiworker: task %s of %d, %d replicas", cluster.name, cluster.num_workers,
             strategy.num_replicas_in_sync)
    return Distribution("multiworker", strategy, cluster)


def _configure_coordination(cluster: Cluster, timeout: float | None = None) -> None:
    """Start TensorFlow's coordination service as MultiWorkerMirroredStrategy would, but with a heartbeat
    timeout of HEARTBEAT_TIMEOUT_S instead of TensorFlow's 10 s: on 2 loaded cores a starved worker
    missed 10 s of heartbeats while starting and the cluster aborted (measured). A lost worker is then
    reported after about this long.

    With a ``timeout`` (seconds), every task registers through a barrier that fails after that long
    (``cluster_register_with_barrier``, ``cluster_register_timeout_in_ms``): the strategy's creation then
    raises DeadlineExceededError instead of waiting forever for a task that never starts (without the
    barrier TensorFlow's leader ignores the timeout and waits in its first device exchange, measured).
    Uses TensorFlow internals; if they move, TensorFlow's defaults stay (and the formation watcher still
    ends the wait, keras_vae.training.peers)."""
    try:
        from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
        from tensorflow.python.distribute import multi_worker_util
        from tensorflow.python.eager import context
        from tensorflow.python.training import server_lib

        if context.context().coordination_service is not None:
            return
        spec = server_lib.ClusterSpec({job: list(addresses) for job, addresses in cluster.jobs.items()})
        jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(cluster.jobs[job]))
                for job in JOBS if job in cluster.jobs]
        context.context().configure_coordination_service(
            service_type="standalone", service_leader=multi_worker_util.coordination_leader(spec),
            coordinated_jobs=jobs, heartbeat_timeout_in_ms=int(HEARTBEAT_TIMEOUT_S * 1000),
            cluster_register_timeout_in_ms=0 if timeout is None else max(1, int(timeout * 1000)))
        if timeout is not None:
            context.context()._coordination_service_config.cluster_register_with_barrier = True
    except (ImportError, AttributeError, TypeError) as exc:  # pragma: no cover - another TensorFlow
        log.warning("cannot set the coordination heartbeat timeout (%s): TensorFlow's default applies", exc)


def install_fit_fix() -> None:
    """Let Keras' ``fit``/``evaluate`` reduce scalar logs under MultiWorkerMirroredStrategy (idempotent).

    In multi-worker mode Keras reduces each value of ``train_step``'s logs with
    ``strategy.reduce("MEAN", v, axis=0)``, which rejects rank-0 values; this wraps Keras'
    ``reduce_per_replica`` so that rank-0 values (plain tensors or per-replica ones) are reduced with
    ``axis=None`` instead: an all-reduce, the mean over the replicas. Every other value, and every
    other strategy, goes to Keras' own function unchanged."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer.reduce_per_replica, "_keras_vae_fix", False):
        return
    original = trainer.reduce_per_replica

    def is_scalar(v) -> bool:
        if isinstance(v, tf.distribute.DistributedValues):
            v = v.values[0]
        return isinstance(v, (tf.Tensor, tf.Variable)) and v.shape.rank == 0

    def reduce_per_replica(values, strategy, reduction):
        if not (trainer._collective_all_reduce_multi_worker(strategy) and reduction in ("auto", "mean")):
            return original(values, strategy, reduction)
        return tf.nest.map_structure(
            lambda v: strategy.reduce("MEAN", v, axis=None) if is_scalar(v) else original(v, strategy, reduction),
            values)

    reduce_per_replica._keras_vae_fix = True
    trainer.reduce_per_replica = reduce_per_replica


def install_build_fix() -> None:
    """Make Keras' ``fit`` under a strategy read the data in the order one process reads it (idempotent).

    A model created in ``strategy.scope()`` makes ``fit`` call ``_maybe_symbolic_build``, which opens an
    iterator over the dataset to take one batch, then resets it: ``fit``'s own iterator is the
    dataset's second iteration, so a pipeline that reshuffles every iteration (seeded shuffle and
    augmentation noise, as keras_vae.data's) comes in another order than in one process with the same
    seed (measured: the one-SGD-step comparison differed in the second digit). When nothing needs
    building (the keras-vae models build their networks at construction and their optimizers in
    ``compile``), skip it, as ``fit`` does without a strategy."""
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    original = TensorFlowTrainer._maybe_symbolic_build
    if getattr(original, "_keras_vae_fix", False):
        return

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        unbuilt = (not all(layer.built for layer in self._flatten_layers())
                   or any(part is not None and not part.built
                          for part in (self._compile_metrics, self._compile_loss, self.optimizer)))
        if unbuilt:
            return original(self, iterator=iterator, data_batch=data_batch)
        return None

    _maybe_symbolic_build._keras_vae_fix = True
    TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build


class WorkerLost(KerasVAEError):
    """A task of the multi-worker cluster stopped: the collectives of the others fail."""


def _lost_task(message: str, cluster: Cluster | None = None,
               probe: peer_checks.Probe | None = peer_checks.answers) -> str:
    """The task(s) a TensorFlow error after a lost peer names ('worker:1'): from the task names in the
    message, else the peer whose TF_CONFIG address is in it, else the peers that no longer answer
    (``probe``), else 'a task' (keras_vae.training.peers.lost_tasks)."""
    if cluster is None:
        return peer_checks.lost_tasks(message, probe=None)
    return peer_checks.lost_tasks(message, cluster.name, cluster.peers, probe)


def _checkpoint_epoch(out_dir: Path) -> int | None:
    try:
        return int(json.loads((out_dir / ".keras-vae-backup" / "checkpoint.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def worker_loss_reported(dist: Distribution, out_dir: Path) -> Iterator[None]:
    """Inside: TensorFlow's collective failures after a lost task (UnavailableError from the coordination
    service's heartbeat check, or an aborted/timed-out collective) become one WorkerLost line saying
    how to resume. Without a cluster it does nothing."""
    if dist.cluster is None:
        yield
        return
    import tensorflow as tf

    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.DeadlineExceededError) as exc:
        import re

        text = re.sub(r"\{\{.*?\}\}\s*", "", str(exc.message)).strip()  # TensorFlow's {{function_node ...}}
        first = (text.splitlines() or [type(exc).__name__])[0]
        lost = _lost_task(str(exc.message), dist.cluster)
        epoch = _checkpoint_epoch(Path(out_dir))
        resume = (f"they resume from the chief's checkpoint after epoch {epoch}" if epoch is not None
                  else "no epoch had finished, so training starts over")
        raise WorkerLost(
            f"the multi-worker cluster lost {lost} ({type(exc).__name__}: {short(first, 160)}): start every "
            f"worker again with the same command; {resume}") from None


@contextlib.contextmanager
def worker_folder(dist: Distribution) -> Iterator[Path]:
    """A temporary folder for a non-chief worker's copy of the run (deleted afterwards)."""
    name = dist.cluster.name.replace(":", "-") if dist.cluster else "worker"
    path = Path(tempfile.mkdtemp(prefix=f"keras-vae-{name}-"))
    try:
        yield path / "run"
    finally:
        shutil.rmtree(path, ignore_errors=True)
