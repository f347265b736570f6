"""Test helpers: synthetic data in the real file formats, and running the real CLIs."""

import functools
import http.server
import os
import subprocess
import sys
import threading

from cifar10.synthetic import (  # noqa: F401 -- re-exported for the tests
    cifar_records, make_cifar_dir, synthetic_cifar)
from mnist.synthetic import make_mnist_dir, synthetic_mnist, write_idx  # noqa: F401

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(REPO, "..", "shared", "data")


def cli_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def cli(module, *args):
    """The argv that runs ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def start_cli(module, *args):
    """Starts ``python -m module args`` in the background, stdout and stderr merged."""
    return subprocess.Popen(cli(module, *args), env=cli_env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_pair(dataset, train_dir, eval_args, train_args, timeout=300):
    """The two-terminal workflow: evaluator started first, then the trainer, on ``train_dir``.

    Waits for both, asserts both exited 0, and returns their outputs.
    """
    evaluator = start_cli(f"{dataset}.eval", f"--train_dir={train_dir}", "--num_threads=1",
                          *eval_args)
    trainer = start_cli(f"{dataset}.train", f"--train_dir={train_dir}", *train_args)
    train_out, _ = trainer.communicate(timeout=timeout)
    eval_out, _ = evaluator.communicate(timeout=timeout)
    assert trainer.returncode == 0, train_out
    assert evaluator.returncode == 0, eval_out
    return train_out, eval_out


def saved_model_cli_run(export_dir, images, workdir):
    """Runs the real ``saved_model_cli run`` (TensorFlow's own session-based loader, as
    TensorFlow Serving's) on ``export_dir``'s ``serving_default`` with uint8 ``images``;
    returns its outputs {key: array}."""
    import numpy as np
    inputs, outdir = os.path.join(workdir, "serve_in.npy"), os.path.join(workdir, "serve_out")
    np.save(inputs, images)
    tool = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run([tool, "run", "--dir", export_dir, "--tag_set", "serve",
                             "--signature_def", "serving_default", "--inputs",
                             f"images={inputs}", "--outdir", outdir, "--overwrite"],
                            capture_output=True, text=True, env=cli_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return {name[:-4]: np.load(os.path.join(outdir, name), allow_pickle=True)
            for name in os.listdir(outdir)}


def tflite_run(export_dir, images):
    """Converts ``export_dir`` with TensorFlow Lite's converter and runs its
    ``serving_default`` in TensorFlow Lite's interpreter; returns its outputs."""
    import warnings

    import tensorflow as tf
    model = tf.lite.TFLiteConverter.from_saved_model(export_dir).convert()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's move to ai_edge_litert
        interpreter = tf.lite.Interpreter(model_content=model)
    return interpreter.get_signature_runner("serving_default")(images=images)


def onednn_on(setting=None, first_import="tensorflow"):
    """Whether a fresh process that imports ``first_import`` first runs TensorFlow's oneDNN
    kernels, with TF_ENABLE_ONEDNN_OPTS=``setting`` (None: unset)."""
    env = {k: v for k, v in cli_env().items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    result = subprocess.run(
        [sys.executable, "-c", f"import {first_import}\n"
         "from tensorflow.python.util import _pywrap_util_port as p\n"
         "print(bool(p.IsMklEnabled()))"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()[-1] == "True"


def run_cli(module, *args, timeout=180, env=None):
    """Runs a CLI to completion; returns the CompletedProcess (text output).
    ``env``: variables to set on top of the usual environment."""
    return subprocess.run(cli(module, *args), capture_output=True, text=True,
                          timeout=timeout, env=dict(cli_env(), **(env or {})), cwd=REPO)


# What an outer make (``make test``) leaves in the environment that would change what a
# make target under test does: its command-line variables and the paths it exports.
MAKE_STATE = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "TRAIN_DIR", "DATA_DIR",
              "DATASET", "ARGS", "PRESET")


def run_make(*args, timeout=420):
    """Runs ``make args`` in the repository as a user's shell would, to completion."""
    env = {k: v for k, v in os.environ.items() if k not in MAKE_STATE}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def error_lines(stderr):
    """The lines of stderr that are the tool's own words (not TensorFlow's start-up noise)."""
    return [line for line in stderr.splitlines()
            if line.startswith("error:") or "FATAL Flags parsing error" in line
            or line.startswith("Traceback")]


def assert_one_clear_line(result, *fragments):
    """The command failed with exactly one line of its own on stderr holding ``fragments``."""
    assert result.returncode != 0, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert not lines[0].startswith("Traceback"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def tree_state(path):
    """{relative path: (size, mtime_ns)} of every file below ``path`` but the locks, which
    any command that checks a dir takes (and rewrites with its own pid)."""
    state = {}
    for root, _, files in os.walk(path):
        for name in files:
            if name == ".lock":
                continue
            full = os.path.join(root, name)
            st = os.stat(full)
            state[os.path.relpath(full, path)] = (st.st_size, st.st_mtime_ns)
    return state


class HttpServer:
    """Serves ``root`` on 127.0.0.1 (a free port) until ``close()``: the tests' download host."""

    def __init__(self, root):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
        handler.log_message = lambda *args: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def train_config(dataset, data_dir, **overrides):
    """A small, valid TrainConfig for in-process tests; downloads go nowhere."""
    from trainkit import config as config_lib
    from trainkit import registry
    values = dict(dataset=dataset, train_dir="unused", data_dir=data_dir,
                  model=registry.spec(dataset).models[0],
                  batch_size=32, max_steps=10, optimizer="sgd", learning_rate=0.1,
                  learning_rate_decay=1.0, num_epochs_per_decay=1.0, staircase=True,
                  momentum=0.9, l2_regularization=0.0, moving_average_decay=0.99,
                  log_frequency=10, save_summaries_steps=0, save_checkpoint_steps=0,
                  save_checkpoint_secs=0, max_to_keep=5, seed=0,
                  validation_size=100 if dataset == "mnist" else 0,
                  data_mirrors=("http://127.0.0.1:9/",),
                  options={name: option.default
                           for name, option in registry.spec(dataset).options.items()})
    values.update(overrides)
    return config_lib.TrainConfig(**values)
