"""This process's place in the cluster that ``TF_CONFIG`` describes: what it does and
whether it writes the train dir (no TensorFlow here, so an entry point asks first).
"""

import json
import os

from trainkit import errors

# TF_CONFIG task types: these train; "evaluator" runs the evaluator (see role).
TRAINING_TASKS = ("chief", "worker")


def role():
    """What ``python -m DATASET.train`` does in the cluster ``TF_CONFIG`` describes:
    ``"train"`` (no TF_CONFIG, or task type chief or worker) or ``"evaluate"`` (task type
    evaluator, as Estimator's ``train_and_evaluate`` did). UserError for a parameter
    server (MultiWorkerMirroredStrategy has none) or an unknown task type."""
    if not os.environ.get("TF_CONFIG"):
        return "train"
    task_type, _, _, _ = task()
    if task_type == "evaluator":
        return "evaluate"
    if task_type == "ps":
        raise errors.UserError(
            "TF_CONFIG makes this process a ps (parameter server) task; training here is "
            "synchronous (MultiWorkerMirroredStrategy) and has no parameter servers: give the "
            "cluster chief, worker and evaluator replicas only")
    if task_type not in TRAINING_TASKS:
        raise errors.UserError(
            f"TF_CONFIG gives this process task type {task_type!r}; expected chief, worker or "
            "evaluator")
    return "train"


def check(config):
    """UserError if ``TF_CONFIG`` describes several training tasks while ``config`` trains
    alone: each would train its own run into the same train dir."""
    if not os.environ.get("TF_CONFIG") or config.strategy == "multi_worker":
        return
    _, _, num_workers, _ = task()
    if num_workers > 1:
        raise errors.UserError(
            f"TF_CONFIG describes {num_workers} training tasks, but --strategy={config.strategy} "
            "trains in one process: pass --strategy=multi_worker to every replica")


def task():
    """This process's place in the cluster that ``TF_CONFIG`` describes:
    ``(task type, index, number of training workers, is chief)``.

    The chief is the ``chief`` task, else worker 0. UserError if TF_CONFIG is
    missing or malformed, or if its cluster holds parameter servers.
    """
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise errors.UserError(
            "--strategy=multi_worker needs the TF_CONFIG environment variable (the cluster and "
            "this process's task); scripts/multi_worker.py sets it for local workers")
    shape = ('expected {"cluster": {"worker": ["host:port", ...]}, "task": {"type": '
             '"worker", "index": N}}')
    try:
        tf_config = json.loads(text)
        cluster, task = tf_config["cluster"], tf_config["task"]
        task_type, task_id = task["type"], int(task["index"])
        num_workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise errors.UserError(f"TF_CONFIG is not a valid cluster description ({e!r}); "
                               f"{shape}") from None
    if not all(isinstance(hosts, list) and hosts for hosts in cluster.values()) or not cluster:
        raise errors.UserError(f"TF_CONFIG's cluster is empty or names a task type without "
                               f"hosts ({json.dumps(cluster)}); {shape}")
    if task_type in TRAINING_TASKS and task_type not in cluster:
        raise errors.UserError(f"TF_CONFIG makes this process a {task_type!r} task, which its "
                               f"cluster does not list ({', '.join(cluster)}); {shape}")
    if task_type in TRAINING_TASKS and not 0 <= task_id < len(cluster[task_type]):
        raise errors.UserError(
            f"TF_CONFIG makes this process {task_type} {task_id}, but its cluster has "
            f"{len(cluster[task_type])} {task_type} task(s) (indices 0 to "
            f"{len(cluster[task_type]) - 1}); give each process its own index")
    if cluster.get("ps"):
        raise errors.UserError(
            "TF_CONFIG's cluster has ps (parameter server) tasks; training here is synchronous "
            "(MultiWorkerMirroredStrategy) and has none: give the cluster chief, worker and "
            "evaluator replicas only")
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0
                                         and "chief" not in cluster)
    return task_type, task_id, num_workers, is_chief


def is_chief(config):
    """Whether this process writes the train dir: always, but in a multi-worker run
    where TF_CONFIG makes another process the chief."""
    return config.strategy != "multi_worker" or task()[3]
