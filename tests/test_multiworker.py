"""Multi-worker training (keras_vae.training.distributed, keras_vae.training.peers): TF_CONFIG checks, the
peer timeout (a missing peer named while the cluster forms, then one error line), naming the lost task
from TensorFlow's messages, two workers on 127.0.0.1 against one process, a killed worker resuming from
the chief's checkpoint, and the Kubernetes example's TF_CONFIG.

The two-process tests start every worker under ``timeout -s KILL`` in its own session and kill the
session by PID in teardown: a worker whose peer never starts waits forever and ignores SIGTERM.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from keras_vae.training import peers
from keras_vae.training.distributed import (
    DistributedError,
    _lost_task,
    check_global_batch,
    check_port_free,
    make_distribution,
    parse_tf_config,
)
from tests.support.sgd_step import one_step

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
WORKER_LIMIT_S = 240  # per worker process; a healthy one needs a fraction of this even on 2 loaded cores
F32_EPS = float(np.finfo(np.float32).eps)


def tf_config(ports, index, job="worker"):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": job, "index": index}})


def free_ports(n):
    """n distinct ports that were free a moment ago (bound to port 0, then released)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Workers:
    """Processes started by a test, each under ``timeout`` in its own session; ``kill_all`` ends them by PID."""

    def __init__(self, tmp_path):
        self.tmp_path, self.procs, self.logs = tmp_path, [], []

    def start(self, argv, env_extra, name):
        tmp = self.tmp_path / "tmp"  # a killed worker cannot delete its temporary folder: keep it in here
        tmp.mkdir(exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
               "TMPDIR": str(tmp), **env_extra}
        env.pop("TF_CONFIG", None) if "TF_CONFIG" not in env_extra else None
        log = self.tmp_path / f"{name}.log"
        proc = subprocess.Popen(["timeout", "-s", "KILL", str(WORKER_LIMIT_S), PYTHON, *argv], env=env, cwd=ROOT,
                                stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def wait(self, procs=None):
        codes = []
        for proc in procs or self.procs:
            try:
                codes.append(proc.wait(timeout=WORKER_LIMIT_S + 30))
            except subprocess.TimeoutExpired:
                codes.append(None)
        return codes

    def output(self):
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in self.logs)

    def kill(self, proc):
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the session this test started: timeout and its python
        except ProcessLookupError:
            pass
        proc.wait()

    def kill_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc)


@pytest.fixture
def workers(tmp_path):
    w = Workers(tmp_path)
    yield w
    w.kill_all()


# --- TF_CONFIG, batch and port checks (no TensorFlow) ---------------------------------------------
def test_tf_config_parses_the_documented_form():
    cluster = parse_tf_config(tf_config([1111, 2222], 1))
    assert (cluster.task_type, cluster.task_index, cluster.num_workers) == ("worker", 1, 2)
    assert not cluster.is_chief and parse_tf_config(tf_config([1111, 2222], 0)).is_chief
    assert cluster.address == "127.0.0.1:2222"
    with_chief = json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]},
                             "task": {"type": "worker", "index": 0}})
    parsed = parse_tf_config(with_chief)
    assert parsed.num_workers == 3 and not parsed.is_chief  # with a chief job, worker 0 is not the chief


@pytest.mark.parametrize("text, message", [
    (None, "needs the TF_CONFIG environment variable"),
    ("", "needs the TF_CONFIG environment variable"),
    ("{cluster", "is not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"task": {"type": "worker", "index": 0}}', "has no 'cluster' object"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "worker", "index": 0}}', "lists job 'ps'"),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "must be a non-empty list"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "not a 'host:port' string"),
    ('{"cluster": {"worker": ["a:99999"]}, "task": {"type": "worker", "index": 0}}', "port in 1..65535"),
    ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}', "twice"),
    ('{"cluster": {"worker": ["a:1"]}}', "has no 'task' object"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "not a job of the cluster"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}}', "is not an integer"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}',
     "task index 2 is out of range: cluster 'worker' has 2 address(es), so the index must be in 0..1"),
    ('{"cluster": {"chief": ["a:1", "b:1"], "worker": ["c:1"]}, "task": {"type": "worker", "index": 0}}',
     "there is one chief"),
])
def test_tf_config_errors_name_the_problem(text, message):
    with pytest.raises(DistributedError) as info:
        parse_tf_config(text)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_global_batch_must_split_over_the_replicas():
    check_global_batch(32, 2)
    check_global_batch(7, 1)
    with pytest.raises(DistributedError, match=r"batch_size 33 .* 2 replicas: choose a multiple of 2 \(e.g. 32 or 34\)"):
        check_global_batch(33, 2)
    # multiworker checks it against the cluster size before TensorFlow starts
    with pytest.raises(DistributedError, match="batch_size 9 .* 2 replicas"):
        make_distribution("multiworker", 9, environ={"TF_CONFIG": tf_config([1111, 2222], 0)})


def test_a_taken_port_means_a_duplicated_task_index():
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = parse_tf_config(tf_config([port, port + 1 if port < 65535 else port - 1], 0))
        with pytest.raises(DistributedError, match=f"port {port} is in use .* same task index"):
            check_port_free(cluster)


def test_cli_reports_tf_config_problems_in_one_line(tmp_path, monkeypatch, capsys):
    from keras_vae.cli import main

    monkeypatch.delenv("TF_CONFIG", raising=False)
    out = tmp_path / "run"
    assert main(["train", "--preset", "tiny-vae", "--strategy", "multiworker", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("keras-vae train: error: --strategy multiworker needs the TF_CONFIG environment variable")
    assert "\n" not in err and not out.exists()
    monkeypatch.setenv("TF_CONFIG", tf_config([1111, 2222], 5))
    assert main(["train", "--preset", "tiny-vae", "--strategy", "multiworker", "--out", str(out)]) == 2
    assert "task index 5 is out of range" in capsys.readouterr().err
    monkeypatch.setenv("TF_CONFIG", tf_config([1111, 2222], 0))
    assert main(["train", "--preset", "tiny-vae", "--strategy", "multiworker", "--batch-size", "33",
                 "--out", str(out)]) == 2
    assert "batch_size 33 is the global batch" in capsys.readouterr().err
    assert main(["train", "--preset", "tiny-vae", "--strategy", "multiworker"]) == 2
    assert "--strategy multiworker needs --out" in capsys.readouterr().err
    assert main(["train", "--preset", "tiny-vae", "--set", "train.strategy=ring", "--out", str(out)]) == 2
    assert "unknown strategy 'ring'" in capsys.readouterr().err
    assert not out.exists()


# --- the peer timeout (no TensorFlow) ----------------------------------------------------------------
@pytest.mark.parametrize("text, seconds", [("300", 300.0), ("0.5", 0.5), ("none", None), ("None", None),
                                           ("0", None), ("inf", None)])
def test_peer_timeout_accepts_seconds_or_none(text, seconds):
    assert peers.parse_peer_timeout(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1", "nan"])
def test_peer_timeout_refuses_other_values(text):
    with pytest.raises(ValueError, match="expected seconds"):
        peers.parse_peer_timeout(text)


def test_peer_timeout_comes_from_the_flag_then_the_environment_then_the_default():
    assert peers.peer_timeout("", {}) == peers.DEFAULT_PEER_TIMEOUT_S
    assert peers.peer_timeout("", {peers.PEER_TIMEOUT_ENV: "45"}) == 45.0
    assert peers.peer_timeout("", {peers.PEER_TIMEOUT_ENV: "none"}) is None
    assert peers.peer_timeout(12.0, {peers.PEER_TIMEOUT_ENV: "45"}) == 12.0  # the flag wins
    assert peers.peer_timeout(None, {peers.PEER_TIMEOUT_ENV: "45"}) is None
    with pytest.raises(peers.PeerTimeoutError, match="KERAS_VAE_PEER_TIMEOUT: expected seconds .* got 'soon'"):
        peers.peer_timeout("", {peers.PEER_TIMEOUT_ENV: "soon"})


def test_cli_parses_the_peer_timeout_option():
    from keras_vae.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["train", "--peer-timeout", "20"]).peer_timeout == 20.0
    assert parse(["train", "--peer-timeout", "none"]).peer_timeout is None
    assert not hasattr(parse(["train"]), "peer_timeout")  # not given: $KERAS_VAE_PEER_TIMEOUT, else the default
    with pytest.raises(SystemExit):
        parse(["train", "--peer-timeout", "soon"])


def test_a_peer_answers_once_its_port_listens():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{server.getsockname()[1]}"
        assert not peers.answers(address)  # bound, not listening: refused, as before a worker starts
        server.listen()
        assert peers.answers(address)
    assert not peers.answers(address)  # closed again, as after a worker ended


def test_the_watch_names_the_silent_peers_with_the_time_waited_then_gives_up():
    cluster = parse_tf_config(json.dumps({"cluster": {"chief": ["c:1"], "worker": ["w0:2", "w1:3"]},
                                          "task": {"type": "worker", "index": 0}}))
    assert cluster.peers == [("chief:0", "c:1"), ("worker:1", "w1:3")]
    now = [0.0]
    lines, errors = [], []
    peers.watch(cluster.name, cluster.peers, 30.0, every_s=10.0, give_up_after_s=35.0, report=lines.append,
                give_up=errors.append, probe=lambda address: address == "c:1", clock=lambda: now[0],
                sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert lines == [f"multiworker: task worker:0 waits for worker:1 (w1:3) to start: no answer at that address "
                     f"yet; {t} s so far (--peer-timeout 30 s)" for t in (10, 20, 30)]
    assert errors == [("multi-worker task worker:0 gave up after 40 s (--peer-timeout 30 s): worker:1 (w1:3) never "
                      "joined (no answer at that address); start every task that TF_CONFIG lists (the same "
                      "cluster, each its own index) within the timeout, or raise --peer-timeout (or "
                      "KERAS_VAE_PEER_TIMEOUT; 'none' waits without a limit)")]
    lines.clear()
    peers.watch("worker:0", cluster.peers, None, every_s=10.0, give_up_after_s=None, report=lines.append,
                give_up=errors.append, probe=lambda address: True, clock=lambda: now[0],
                sleep=lambda s: now.__setitem__(0, now[0] + s), alive=lambda: len(lines) < 2)
    assert lines[0].startswith("multiworker: task worker:0 waits for the cluster to form (every peer answers: "
                               "chief:0 (c:1), worker:1 (w1:3)); ") and lines[0].endswith("(no limit)")
    assert len(lines) == 2 and len(errors) == 1  # stops once the cluster formed (alive() false); never gives up


WATCHED_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from keras_vae.training.peers import formation_watched
    with formation_watched("worker:0", [("worker:1", sys.argv[2])], 0.2, every_s=0.2, give_up_after_s=1.0):
        print("waiting", flush=True)
        time.sleep(float(sys.argv[3]))  # stands in for TensorFlow's wait
    print("formed", flush=True)
""")


@pytest.mark.slow
def test_the_watcher_process_ends_a_wait_that_outlives_the_timeout(tmp_path):
    # the last resort when TensorFlow's own registration timeout has not ended the wait: the watcher
    # (its own process: TensorFlow holds the GIL while it waits) prints the error line and kills the task
    ports = free_ports(1)
    hung = subprocess.run([PYTHON, "-c", WATCHED_SCRIPT, str(ROOT), f"127.0.0.1:{ports[0]}", "600"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert hung.returncode == -signal.SIGKILL and hung.stdout == "waiting\n", hung
    lines = hung.stderr.splitlines()
    assert lines[-1].startswith(f"keras-vae train: error: multi-worker task worker:0 gave up after 1 s "
                                f"(--peer-timeout 0.2 s): worker:1 (127.0.0.1:{ports[0]}) never joined"), lines
    assert lines[0].startswith(f"multiworker: task worker:0 waits for worker:1 (127.0.0.1:{ports[0]}) to start")
    formed = subprocess.run([PYTHON, "-c", WATCHED_SCRIPT, str(ROOT), f"127.0.0.1:{ports[0]}", "0"],
                            check=False, capture_output=True, text=True, timeout=120)
    assert (formed.returncode, formed.stdout, formed.stderr) == (0, "waiting\nformed\n", "")  # watcher stopped


@pytest.mark.slow
def test_a_task_whose_peer_never_starts_names_it_then_stops_with_one_error_line(workers, tmp_path):
    # worker 0 (the coordination leader) of one cluster and worker 1 of another, each alone: both name
    # the missing peer with the time waited, then stop by themselves (exit 2, not the safety kill). The wait
    # is idle time: 8 s gives the first waiting line (every timeout / 4 = 2 s) a 6 s margin before the leader's
    # registration timeout, the other task gives up after about twice the timeout
    timeout = 8
    clusters = [free_ports(2), free_ports(2)]
    procs = [workers.start([*_train_argv(tmp_path / f"run{i}", 1), "--peer-timeout", str(timeout)],
                           {"TF_CONFIG": tf_config(ports, i)}, f"alone{i}") for i, ports in enumerate(clusters)]
    assert workers.wait(procs) == [2, 2], workers.output()
    for i, ports in enumerate(clusters):
        missing = f"worker:{1 - i} (127.0.0.1:{ports[1 - i]})"
        text = workers.logs[i].read_text()
        waited = [int(m) for m in re.findall(
            rf"^multiworker: task worker:{i} waits for {re.escape(missing)} to start: no answer at that address "
            rf"yet; (\d+) s so far \(--peer-timeout {timeout} s\)$", text, flags=re.MULTILINE)]
        assert waited and waited == sorted(waited), workers.output()
        errors = [line for line in text.splitlines() if line.startswith("keras-vae train: error:")]
        assert len(errors) == 1, workers.output()
        assert re.match(rf"keras-vae train: error: multi-worker task worker:{i} gave up after \d+ s "
                        rf"\(--peer-timeout {timeout} s\): {re.escape(missing)} never joined", errors[0]), errors
        assert int(re.search(r"gave up after (\d+) s", errors[0]).group(1)) >= timeout
        assert not (tmp_path / f"run{i}").exists()


# --- which task was lost ---------------------------------------------------------------------------
CLUSTER = parse_tf_config(tf_config([45123, 45124], 0))


def _never(address):
    raise AssertionError(f"probed {address}: the message names the task")


@pytest.mark.parametrize("message", [
    # the coordination service's heartbeat check
    ("The following tasks are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks "
    "have crashed. Check the task logs for an earlier error to debug further."),
    # a peer's own error, relayed by the service
    "Task /job:worker/replica:0/task:0 aborted. Error reported from /job:worker/task:1: Socket closed",
    # a failed RPC to the peer (the remote target names it; this task's name also appears)
    ("Collective ops is aborted by: Connection reset by peer\nThe error could be from a previous operation. Restart "
    "your program to reset.\nAdditional GRPC error information from remote target /job:worker/replica:0/task:1 "
    "while calling /tensorflow.WorkerService/RecvBuf:\n:{\"created\":\"@1796545634.1\",\"description\":"
    "\"Error received from peer ipv4:127.0.0.1:45124\"} [[{{node CollectiveReduceV2}}]] on /job:worker/replica:0/task:0"),
    # only gRPC's peer address: the task with that address in TF_CONFIG
    ("Collective ops is aborted by: recvmsg:Connection reset by peer {grpc_status:14, created_time:\"2026-01-01\", "
    "description:\"Error received from peer ipv4:127.0.0.1:45124\"}"),
    ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:45124: Failed to connect to remote host: "
    "Connection refused"),
])
def test_the_lost_task_is_named_from_the_message(message):
    assert _lost_task(message, CLUSTER, probe=_never) == "worker:1"


def test_a_message_that_names_no_task_falls_back_to_the_peers_that_stopped_answering():
    message = "Collective ops is aborted by: recvmsg:Connection reset by peer"  # seen under load
    assert _lost_task(message, CLUSTER, probe=lambda address: address != "127.0.0.1:45124") == "worker:1"
    assert _lost_task(message, CLUSTER, probe=lambda address: True) == "a task"  # every peer still answers
    three = parse_tf_config(json.dumps({"cluster": {"chief": ["10.0.0.1:2222"],
                                                    "worker": ["10.0.0.2:2222", "10.0.0.3:2222"]},
                                        "task": {"type": "worker", "index": 1}}))
    assert _lost_task(message, three, probe=lambda address: False) == "chief:0, worker:0"  # never itself
    # an address in the message that is a host name in TF_CONFIG: matched through the name's IP
    by_name = parse_tf_config(tf_config([45123, 45124], 1).replace("127.0.0.1:45123", "localhost:45123"))
    assert _lost_task("Error received from peer ipv4:127.0.0.1:45123", by_name, probe=_never) == "worker:0"


def test_the_probe_names_the_peer_whose_port_closed():
    # real sockets: the peer's port does not listen (as after its process died), this task's own does
    with socket.socket() as mine, socket.socket() as theirs:
        for s in (mine, theirs):
            s.bind(("127.0.0.1", 0))
        mine.listen()
        cluster = parse_tf_config(tf_config([mine.getsockname()[1], theirs.getsockname()[1]], 0))
        assert _lost_task("Collective ops is aborted by: recvmsg:Connection reset by peer", cluster) == "worker:1"


# --- two workers vs one process -------------------------------------------------------------------
def _load(path, n):
    data = np.load(path)
    return [data[f"before_{i}"] for i in range(n)], [data[f"after_{i}"] for i in range(n)]


@pytest.mark.slow
def test_two_workers_take_the_same_sgd_step_as_one_process(workers, tmp_path):
    # the VAEGAN's custom train_step (two optimizers), population KL and BatchNorm statistics all-reduced
    # (sync_batch_norm); deterministic forward pass (posterior mean, no dropout) so only round-off differs.
    # The real pipeline: without install_build_fix the workers started on its second (reshuffled) iteration.
    overrides = json.dumps({"model": {"sync_batch_norm": True, "disc_dropout": 0.0},
                            "loss": {"sample_posterior": False}})
    lr = "1e-4"
    ports = free_ports(2)
    procs = [workers.start(["-m", "tests.support.sgd_step", "worker", str(tmp_path / f"w{i}.npz"), overrides, lr],
                           {"TF_CONFIG": tf_config(ports, i)}, f"worker{i}") for i in range(2)]
    # the one-process reference: the same function in this process, while the workers run
    single = one_step("single", str(tmp_path / "single.npz"), overrides, float(lr))
    assert workers.wait(procs) == [0, 0], workers.output()
    results = [json.loads(log.read_text().strip().splitlines()[-1]) for log in workers.logs] + [single]
    assert [r["replicas"] for r in results] == [2, 2, 1]
    assert all(r["g_iterations"] == 1 and r["d_iterations"] == 1 for r in results)
    n = len(results[0]["names"])
    (b0, a0), (b1, a1), (bs, as_) = (_load(tmp_path / f"{name}.npz", n) for name in ("w0", "w1", "single"))
    for x, y, z in zip(b0, b1, bs):  # the same start everywhere (seeded init; MWMS broadcasts worker 0's)
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)
    for x, y in zip(a0, a1):  # the workers hold one model: identical after the step
        np.testing.assert_array_equal(x, y)
    # vs one process: the same sums in another order (per worker, then across workers). A float32 sum of
    # n terms is off by at most (n - 1) * eps relative to the sum of magnitudes (the update's own size
    # stands in for it); the longest sums run over the global batch and every pixel (n = batch * height
    # * width), and the errors of successive layers add up along the forward and backward pass, so
    # the bound is (layers with a kernel) * n * eps. A real difference (another batch, unsynchronised
    # BatchNorm) changes the updates by tens of percent.
    n_terms = 8 * 16 * 16
    depth = sum(name.endswith("/kernel") for name in results[0]["names"])
    moved = 0.0
    for name, before, mw, one in zip(results[0]["names"], bs, a0, as_):
        if not np.issubdtype(before.dtype, np.floating):
            continue
        update_mw, update_one = mw - before, one - before
        scale = max(float(np.abs(update_one).max()), float(np.abs(one).max()) * F32_EPS)
        moved = max(moved, float(np.abs(update_one).max()))
        tolerance = depth * n_terms * F32_EPS * scale
        assert float(np.abs(update_mw - update_one).max()) <= tolerance, (name, tolerance)
    # the step did move the weights (lr 1e-4 times the gradients of the 5000-weighted reconstruction term)
    assert moved > 1e-3
    assert results[0]["loss"] == pytest.approx(results[2]["loss"], rel=n_terms * F32_EPS)


# --- a killed worker, then both restarted ----------------------------------------------------------
def _train_argv(out, epochs):
    return ["-m", "keras_vae", "train", "--preset", "tiny-vae", "--strategy", "multiworker", "--out", str(out),
            "--epochs", str(epochs), "--steps-per-epoch", "2", "--quiet", "--iwae-samples", "2",
            "--set", "train.iwae_examples=8", "--set", "train.summary_every=0", "--set", "data.max_examples=64"]


def _checkpoint_epoch(out):
    try:
        return json.loads((out / ".keras-vae-backup" / "checkpoint.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_killed_worker_stops_the_chief_and_a_restart_resumes_from_its_checkpoint(workers, tmp_path):
    out, epochs = tmp_path / "run", 8  # enough epochs that the chief is still training when the worker dies
    ports = free_ports(2)
    first = [workers.start(_train_argv(out, epochs), {"TF_CONFIG": tf_config(ports, i)}, f"first{i}")
             for i in range(2)]
    deadline = time.monotonic() + WORKER_LIMIT_S
    while _checkpoint_epoch(out) < 1 and time.monotonic() < deadline and first[0].poll() is None:
        time.sleep(0.2)
    assert _checkpoint_epoch(out) >= 1, workers.output()
    workers.kill(first[1])  # a worker is lost mid-run: the chief's next collective fails (missed heartbeats)
    assert workers.wait([first[0]]) == [2], workers.output()
    kept = _checkpoint_epoch(out)
    lines = [line for line in workers.logs[0].read_text().splitlines() if line.startswith("keras-vae train: error:")]
    assert len(lines) == 1 and "the multi-worker cluster lost worker:1" in lines[0], workers.output()
    assert f"they resume from the chief's checkpoint after epoch {kept}" in lines[0]
    assert 1 <= kept < epochs, "the run finished before the worker was killed: raise epochs"
    assert not (out / "model.keras").exists()
    ports = free_ports(2)
    second = [workers.start(_train_argv(out, epochs), {"TF_CONFIG": tf_config(ports, i)}, f"second{i}")
              for i in range(2)]
    assert workers.wait(second) == [0, 0], workers.output()
    chief_log = workers.logs[-2].read_text()
    assert f"resuming the interrupted run in {out} from epoch {kept + 1} of {epochs}" in chief_log
    worker_log = workers.logs[-1].read_text()
    assert f"from epoch {kept + 1} of {epochs}" in worker_log  # the worker resumed from the chief's checkpoint
    assert "worker worker:1 finished; the chief writes the run folder" in worker_log
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["resumed"] is True
    assert metrics["strategy"] == {"name": "multiworker", "replicas": 2, "workers": 2}
    assert [e["epoch"] for e in metrics["epochs"]] == list(range(1, epochs + 1))
    import keras

    import keras_vae.models  # noqa: F401 - registers the classes
    model = keras.saving.load_model(out / "model.keras")
    assert int(model.optimizer.iterations.numpy()) == 2 * epochs  # the step counter continued over the restart
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".keras-vae-backup")]
    assert leftovers == []


# --- the Kubernetes example ------------------------------------------------------------------------
def _expand(value, env):
    """Kubernetes' dependent environment variables: $(NAME) -> the value of an earlier variable."""
    for name, replacement in env.items():
        value = value.replace(f"$({name})", replacement)
    return value


def test_kubernetes_manifest_builds_a_valid_tf_config_per_pod():
    import yaml

    path = ROOT / "serving" / "tfserving" / "kubernetes-train-multiworker.yaml"
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    by_kind = {d["kind"]: d for d in documents}
    service, job = by_kind["Service"], by_kind["Job"]
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == spec["completions"]
    assert service["spec"]["clusterIP"] == "None" and pod["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    container = pod["containers"][0]
    env = container["env"]
    assert env[0]["name"] == "WORKER_INDEX" and "job-completion-index" in env[0]["valueFrom"]["fieldRef"]["fieldPath"]
    template = next(e["value"] for e in env if e["name"] == "TF_CONFIG")
    clusters = [parse_tf_config(_expand(template, {"WORKER_INDEX": str(i)})) for i in range(spec["completions"])]
    assert [c.task_index for c in clusters] == list(range(spec["completions"]))
    assert [c.is_chief for c in clusters] == [True] + [False] * (spec["completions"] - 1)
    assert all(c.jobs == clusters[0].jobs for c in clusters) and clusters[0].num_workers == spec["completions"]
    # pod i of an Indexed Job is <job>-<i>, reachable as <job>-<i>.<subdomain> on the Service's port
    port = service["spec"]["ports"][0]["port"]
    assert clusters[0].jobs["worker"] == tuple(f"{job['metadata']['name']}-{i}.{pod['subdomain']}:{port}"
                                               for i in range(spec["completions"]))
    assert {"containerPort": port} in container["ports"]
    args = container["command"] + container["args"]
    assert args[:2] == ["keras-vae", "train"]
    assert args[args.index("--strategy") + 1] == "multiworker"
    out = args[args.index("--out") + 1]
    assert any(out.startswith(m["mountPath"]) for m in container["volumeMounts"])  # on the shared volume
    claim = by_kind["PersistentVolumeClaim"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    # the CLI accepts the arguments (parsed as the container would run them, without training)
    from keras_vae.cli import build_parser
    from keras_vae.commands.options import resolve_config

    config = resolve_config(build_parser().parse_args(args[1:]))
    assert config.train.strategy == "multiworker" and config.model.sync_batch_norm
    check_global_batch(config.train.batch_size, clusters[0].num_workers)


# --- posterior noise per replica --------------------------------------------------------------------
NOISE_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    from keras_vae.models import build_model
    from keras_vae.config.presets import get_preset
    config = get_preset("tiny-vae")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = build_model(config)
    zeros = tf.zeros([3, config.model.latent_dim])
    per_replica = strategy.run(tf.function(lambda: model.sample_posterior(zeros, zeros)))
    draws = [np.asarray(v).tolist() for v in strategy.experimental_local_results(per_replica)]
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "draws": draws}))
""")


@pytest.mark.slow
def test_the_classic_vae_draws_distinct_posterior_noise_on_each_replica(workers, tmp_path):
    proc = workers.start(["-c", NOISE_SCRIPT, str(ROOT)], {}, "noise")
    assert workers.wait([proc]) == [0], workers.output()
    result = json.loads(workers.logs[0].read_text().strip().splitlines()[-1])
    first, second = (np.array(d) for d in result["draws"])
    assert result["replicas"] == 2 and first.shape == second.shape == (3, 4)
    assert np.abs(first).max() > 0 and not np.allclose(first, second)  # was identical before the fold-in


def test_a_run_may_resume_under_another_strategy(tmp_path):
    from keras_vae.config.presets import get_preset
    from keras_vae.errors import ConfigError
    from keras_vae.runs import lifecycle
    from keras_vae.utils.files import write_json

    config = get_preset("tiny-vae")
    write_json(tmp_path / "config.json", config.to_dict())
    other = config.to_dict()
    other["train"]["strategy"] = "multiworker"
    lifecycle.check_same_config(tmp_path, other)  # allowed: the checkpoint does not depend on it
    older = config.to_dict()
    del older["train"]["strategy"]  # config.json of a run from before the field existed
    write_json(tmp_path / "config.json", older)
    lifecycle.check_same_config(tmp_path, config.to_dict())
    other["train"]["batch_size"] = 64  # what the run computes still has to match
    with pytest.raises(ConfigError, match="train.batch_size: 32 -> 64"):
        lifecycle.check_same_config(tmp_path, other)


def test_fit_under_a_strategy_sees_the_data_order_of_one_process():
    # Keras' fit under a strategy opens an iterator to build the model, then resets it: its own iterator
    # was the dataset's second iteration, so a pipeline that reshuffles every iteration (seeded, as
    # keras_vae.data's) came in another order than in one process. install_build_fix skips that draw.
    import keras
    import tensorflow as tf

    dist = make_distribution("mirrored", 2)

    class Probe(keras.Model):
        def __init__(self):
            super().__init__()
            self.w = self.add_weight(shape=(), initializer="zeros")
            self.seen = keras.metrics.Mean(name="seen")
            self.built = True

        def train_step(self, data):
            self.seen.update_state(tf.reduce_mean(data))
            return {"seen": self.seen.result()}

    def pipeline():  # a new dataset object each time: iterations of one object advance its shuffle seed
        return (tf.data.Dataset.range(100).shuffle(100, seed=1, reshuffle_each_iteration=True).batch(2)
                .map(lambda b: tf.cast(b[:, None], tf.float32)).repeat())

    reference = pipeline()
    first_pass = iter(reference)
    expected = [float(np.mean(next(first_pass))) for _ in range(2)]  # what one process trains on first
    second_pass = iter(reference)
    assert [float(np.mean(next(second_pass))) for _ in range(2)] != expected  # the next iteration differs
    batches = pipeline()
    with dist.scope():
        probe = Probe()
        probe.compile(optimizer=keras.optimizers.SGD(0.1))
        probe.optimizer.build(probe.trainable_variables)
    history = probe.fit(dist.prepare(batches), epochs=2, steps_per_epoch=1, verbose=0)
    assert history.history["seen"] == expected
