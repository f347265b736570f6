"""Runs a multi-worker training: N trainer processes, each with its TF_CONFIG, and an evaluator.

On one machine (workers on free 127.0.0.1 ports):

    python scripts/multi_worker.py --dataset=mnist --workers=2 --eval -- \\
        --train_dir=runs/mw --data_dir=data/mnist

Everything after ``--`` goes to every ``python -m DATASET.train``, with
``--strategy=multi_worker`` added. Worker 0 is the chief: it alone writes
into ``--train_dir``. Each worker's log lines are printed prefixed with its
name. Ctrl-C or SIGTERM sends SIGTERM to every worker: they agree on a step,
save it and exit, so ``--resume`` continues exactly there. If a worker
fails, the others are stopped too (they could not go on without it) and the
exit code is the failure's.

On several hosts, run the same command on each one with the whole cluster
and that host's place in it; the train dir must be on storage all hosts see:

    host1$ python scripts/multi_worker.py --dataset=cifar10 \\
        --cluster=host1:23456,host2:23456 --index=0 -- --train_dir=/shared/runs/c1
    host2$ python scripts/multi_worker.py --dataset=cifar10 \\
        --cluster=host1:23456,host2:23456 --index=1 -- --train_dir=/shared/runs/c1
"""

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

STOP_GRACE_SECS = 60  # after SIGTERM, before a worker stuck in a collective is killed


def free_ports(count):
    """``count`` TCP ports free on 127.0.0.1 right now."""
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def tf_config(cluster, index):
    """The TF_CONFIG of worker ``index`` in ``cluster`` (a list of host:port)."""
    return json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}})


def _flag_value(args, name):
    for arg in args:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def _relay(name, stream):
    """Prints a child's output line by line, prefixed with its name."""
    for line in iter(stream.readline, ""):
        sys.stderr.write(f"[{name}] {line}")
    stream.close()


class Group:
    """Child processes started together and stopped together."""

    def __init__(self):
        self.processes = {}  # name -> Popen
        self._relays = []

    def start(self, name, command, env):
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1)
        relay = threading.Thread(target=_relay, args=(name, process.stdout), daemon=True)
        relay.start()
        self.processes[name] = process
        self._relays.append(relay)
        return process

    def signal_all(self, signum, names=None):
        for name, process in self.processes.items():
            if (names is None or name in names) and process.poll() is None:
                process.send_signal(signum)

    def wait(self, names, deadline=None):
        """Waits for ``names`` to exit (killing them at ``deadline``); returns {name: code}."""
        codes = {}
        for name in names:
            process = self.processes[name]
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                codes[name] = process.wait(timeout)
            except subprocess.TimeoutExpired:
                sys.stderr.write(f"{name} did not stop within {STOP_GRACE_SECS} s; killing it\n")
                process.kill()
                codes[name] = process.wait()
        return codes

    def join_output(self):
        for relay in self._relays:
            relay.join(timeout=5)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        usage="%(prog)s --dataset=mnist|cifar10 [--workers=N | --cluster=H:P,... --index=I] "
              "[--eval] -- TRAINER_FLAGS...")
    parser.add_argument("--dataset", required=True, choices=["mnist", "cifar10"])
    parser.add_argument("--workers", type=int, default=2,
                        help="local workers on free 127.0.0.1 ports (default 2)")
    parser.add_argument("--cluster", default=None,
                        help="comma-separated host:port of every worker, for several hosts; "
                             "this process runs only worker --index")
    parser.add_argument("--index", type=int, default=None,
                        help="with --cluster: which worker this host runs (0 is the chief)")
    parser.add_argument("--eval", action="store_true",
                        help="also run the evaluator on --train_dir (on the chief's host)")
    parser.add_argument("--eval_flags", default="",
                        help="extra evaluator flags, one string (e.g. '--eval_interval_secs=10')")
    if argv is None:
        argv = sys.argv[1:]
    ours, trainer_flags = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) \
        if "--" in argv else (argv, [])
    args = parser.parse_args(ours)
    if args.cluster:
        cluster = args.cluster.split(",")
        if args.index is None or not 0 <= args.index < len(cluster):
            parser.error(f"--cluster needs --index between 0 and {len(cluster) - 1}")
        indices = [args.index]
    else:
        if args.workers < 1:
            parser.error("--workers must be at least 1")
        cluster = [f"127.0.0.1:{port}" for port in free_ports(args.workers)]
        indices = list(range(args.workers))
    train_dir = _flag_value(trainer_flags, "train_dir")
    if args.eval and not train_dir:
        parser.error("--eval needs --train_dir=... among the trainer flags after --")

    group = Group()
    workers = []
    for index in indices:
        env = dict(os.environ, TF_CONFIG=tf_config(cluster, index))
        name = f"worker {index}"
        group.start(name, [sys.executable, "-m", f"{args.dataset}.train",
                           "--strategy=multi_worker", *trainer_flags], env)
        workers.append(name)
    sys.stderr.write(f"Started {len(workers)} of {len(cluster)} workers ({', '.join(cluster)}); "
                     "worker 0 is the chief\n")
    evaluator = []
    if args.eval and 0 in indices:
        env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
        group.start("eval", [sys.executable, "-m", f"{args.dataset}.eval",
                             f"--train_dir={train_dir}", *shlex.split(args.eval_flags)], env)
        evaluator = ["eval"]

    stop = {"requested": None}

    def on_signal(signum, frame):
        del frame
        if stop["requested"] is None:
            sys.stderr.write(f"{signal.Signals(signum).name}: asking every worker to save and "
                             "stop\n")
        stop["requested"] = signum
        group.signal_all(signal.SIGTERM, workers)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)

    # Wait for the workers; if one fails, the rest cannot finish: stop them.
    codes, deadline = {}, None
    while len(codes) < len(workers):
        for name in workers:
            if name in codes:
                continue
            code = group.processes[name].poll()
            if code is None:
                continue
            codes[name] = code
            if code != 0 and deadline is None:
                sys.stderr.write(f"{name} exited with code {code}; stopping the others\n")
                group.signal_all(signal.SIGTERM, workers)
                deadline = time.monotonic() + STOP_GRACE_SECS
        if deadline and time.monotonic() > deadline:
            codes.update(group.wait([n for n in workers if n not in codes], deadline))
        if stop["requested"] and deadline is None:
            deadline = time.monotonic() + STOP_GRACE_SECS
        time.sleep(0.2)
    failures = [codes[name] for name in workers if codes[name] != 0]
    if evaluator:
        if failures or stop["requested"]:
            # No DONE is coming; the evaluator's state is safe to stop at any moment.
            group.signal_all(signal.SIGTERM, evaluator)
            group.wait(evaluator)
        else:
            codes.update(group.wait(evaluator))
    group.join_output()
    sys.stderr.write("Exit codes: " + ", ".join(f"{n}: {c}" for n, c in codes.items()) + "\n")
    if failures:
        return failures[0]
    if stop["requested"]:
        return 130 if stop["requested"] == signal.SIGINT else 0
    return next((code for code in codes.values() if code), 0)


if __name__ == "__main__":
    sys.exit(main())
