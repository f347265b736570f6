"""benchmarks/bench.py: its measuring tasks run on small data, and its table tells the truth.

No timing is asserted: only that each task measures something and reports it.
"""

import json
import os
import subprocess
import sys

import pytest

from tests import helpers

pytestmark = pytest.mark.bench  # the lab, apart from the product: -m "not bench" leaves it out

BENCH = os.path.join(helpers.REPO, "benchmarks", "bench.py")


def run_task(task, *args):
    result = subprocess.run([sys.executable, BENCH, f"--task={task}", *args],
                            capture_output=True, text=True, timeout=300,
                            env=helpers.cli_env(), cwd=helpers.REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_train_and_keras_tasks_measure_on_small_data(mnist_data, tmp_path):
    common = ["--dataset=mnist", f"--data_dir={mnist_data}", f"--workdir={tmp_path}",
              "--warmup_steps=3", "--steps=6", "--seconds=1"]
    ours = run_task("train", *common, "--label=t", "--save_secs=1",
                    "--train_flags=--validation_size=100 --moving_average_every_steps=2")
    assert ours["ours_examples_per_sec"] > 0 and 0 < ours["trainer_cores_used"] <= 2.5
    pipeline = run_task("pipeline", *common, "--train_flags=--validation_size=100")
    assert pipeline["pipeline_examples_per_sec"] > 0
    assert ours["steps"] == 6 and ours["batch_size"] == 64
    # float32, as the Keras peer computes, though MNIST's default preset says auto.
    assert ours["precision"] == "float32"
    # conv1 5x5x1x16 at 28x28, conv2 5x5x16x36 at 14x14, dense 1764x128 and 128x10, x2 x3.
    forward = 28 * 28 * 25 * 16 + 14 * 14 * 25 * 16 * 36 + 1764 * 128 + 128 * 10
    assert ours["flops_per_example"] == 3 * 2 * forward
    # The trainer really ran: its checkpoint holds step warmup + steps.
    checkpoint = os.path.join(tmp_path, "mnist-t")
    assert open(os.path.join(checkpoint, "DONE")).read().strip() == "9"
    keras_result = run_task("keras", *common, "--train_flags=--validation_size=100",
                            "--onednn=1")
    assert keras_result["keras_fit_examples_per_sec"] > 0
    # The sides report the kernels they ran with: ours as our entry points set them
    # (oneDNN on unless the user's environment says 0 or false), Keras as asked.
    assert ours["onednn"] is (os.environ["TF_ENABLE_ONEDNN_OPTS"].lower() in ("1", "true"))
    assert keras_result["onednn"] is True


def test_train_task_without_a_pace_measures_one_before_its_window(mnist_data, tmp_path):
    """--steps=0 (the first window on a machine): half the warm-up again, untimed, sets
    how many steps fill --seconds; the window then runs exactly those."""
    result = run_task("train", "--dataset=mnist", f"--data_dir={mnist_data}",
                      f"--workdir={tmp_path}", "--warmup_steps=4", "--steps=0", "--seconds=1",
                      "--label=p", "--save_secs=60", "--train_flags=--validation_size=100")
    assert result["steps"] >= 1 and result["ours_examples_per_sec"] > 0
    done = open(os.path.join(tmp_path, "mnist-p", "DONE")).read().strip()
    assert done == str(4 + 2 + result["steps"])


def test_train_task_with_an_evaluator_times_the_trainer_while_it_polls(mnist_data, tmp_path):
    """The window opens after the evaluator's first evaluation (its start-up is not what
    is measured) and closes with the evaluator still polling: the warm-up's DONE, which
    would send it away after one evaluation, is gone."""
    result = run_task("train", "--dataset=mnist", f"--data_dir={mnist_data}",
                      f"--workdir={tmp_path}", "--warmup_steps=3", "--steps=100", "--seconds=1",
                      "--label=e", "--save_secs=60", "--with_evaluator", "--eval_interval=1",
                      "--eval_flags=--num_threads=1 --priority=normal",
                      "--train_flags=--validation_size=100")
    assert result["evaluator_polling_at_end"] is True
    assert result["evaluations"] >= 0 and result["evaluator_cores_used"] >= 0
    metrics = os.path.join(tmp_path, "mnist-e", "eval", "metrics.jsonl")
    with open(metrics) as f:
        first = json.loads(f.readline())
    assert first["step"] == 3  # the warm-up's checkpoint, scored before the window


def test_keras_baseline_runs_with_tensorflows_own_kernel_choice(tmp_path):
    """--onednn=tf_default: TensorFlow's choice for this CPU, not the one trainkit makes."""
    tf_default = helpers.onednn_on()
    peaks = {option: run_task("peak", "--quick", f"--workdir={tmp_path}", f"--onednn={option}",
                              "--matmul_size=256")
             for option in ("tf_default", "0", "1")}
    assert peaks["tf_default"]["onednn"] is tf_default
    assert peaks["0"]["onednn"] is False and peaks["1"]["onednn"] is True
    assert all(p["matmul_peak_gflops"] > 0 for p in peaks.values())


def test_a_task_runs_with_our_kernel_choice_whatever_the_drivers_environment(tmp_path):
    """No --onednn: oneDNN on, as the entry points set it, even from a driver whose
    environment lacks the setting (one that never imported trainkit)."""
    env = {k: v for k, v in helpers.cli_env().items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    result = subprocess.run([sys.executable, BENCH, "--task=peak", "--quick",
                             f"--workdir={tmp_path}", "--matmul_size=256"],
                            capture_output=True, text=True,
                            timeout=300, env=env, cwd=helpers.REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["onednn"] is True


def _bench():
    sys.path.insert(0, os.path.dirname(BENCH))
    import bench
    return bench


def test_keras_task_runs_the_peers_settings(mnist_data, tmp_path):
    common = ["--dataset=mnist", f"--data_dir={mnist_data}", f"--workdir={tmp_path}",
              "--warmup_steps=20", "--steps=20", "--seconds=1",
              "--train_flags=--validation_size=100"]
    result = run_task("keras", *common, "--spe=10", "--jit")
    assert result["steps_per_execution"] == 10 and result["keras_jit_compile"] is True
    assert result["keras_fit_examples_per_sec"] > 0
    result = run_task("keras", *common, "--spe=1", "--use_ema")
    assert result["steps_per_execution"] == 1 and result["keras_jit_compile"] is False
    assert result["use_ema"] is True and result["keras_fit_examples_per_sec"] > 0


def test_the_pytorch_peer_is_skipped_with_a_line_where_pytorch_is_absent(tmp_path,
                                                                         monkeypatch):
    """PyTorch is not a dependency: without it the bench says so and measures the rest. A
    ``torch`` package that refuses to load, first on the path, stands for its absence."""
    blocked = tmp_path / "torch"
    blocked.mkdir()
    (blocked / "__init__.py").write_text("raise ImportError('no PyTorch here')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    sys.path.insert(0, os.path.dirname(BENCH))
    import airbench94_peers
    said = []
    part = airbench94_peers.benchmark(lambda *a, **k: pytest.fail("nothing to run"),
                                      "unused", str(tmp_path), said.append)
    assert part == {"skipped": "PyTorch is not installed"}
    assert said and "skipped, PyTorch is not installed" in said[0]
    assert airbench94_peers.table(part) == ("airbench94 against PyTorch: not measured "
                                            "(PyTorch is not installed).")


def test_the_pytorch_comparison_reports_medians_and_the_range_the_rounds_allow():
    sys.path.insert(0, os.path.dirname(BENCH))
    import airbench94_peers
    float32 = airbench94_peers.summarize([330.0, 350.0, 340.0], [250.0, 240.0, 260.0])
    assert float32["ratio"] == pytest.approx(340 / 250)
    assert (float32["low"], float32["high"]) == (pytest.approx(330 / 260),
                                                 pytest.approx(350 / 240))
    part = {"precisions": {"float32": float32,
                           "bfloat16": airbench94_peers.summarize([700.0], [1000.0])},
            "flops_per_example": 0.35e9,
            "matmul_peak_gflops": {"float32": 400.0, "bfloat16": 800.0}}
    table = airbench94_peers.table(part)
    assert ("| float32 | 340 (330 / 350 / 340) | 250 (250 / 240 / 260) | 1.36 (1.27-1.46) | "
            "400 | 30% |") in table
    assert "| bfloat16 | 700 (700) | 1,000 (1,000) | 0.70 (0.70-0.70) | 800 | 31% |" in table


def test_the_precisions_part_alternates_both_precisions_and_divides_by_each_ones_peak():
    sys.path.insert(0, os.path.dirname(BENCH))
    import precisions
    asked = []

    def run_task(task, **options):
        asked.append((task, options.get("dtype") or options.get("train_flags")))
        if task == "peak":
            return {"matmul_peak_gflops": {"float32": 200.0, "bfloat16": 400.0}[
                options["dtype"]]}
        fast = "bfloat16" in options["train_flags"]
        return {"ours_examples_per_sec": 3000.0 if fast else 2000.0, "batch_size": 100,
                "flops_per_example": 0.1e9}

    part = precisions.benchmark(run_task, {"cifar10": "c", "mnist": "m"}, "w",
                                lambda line: None, rounds=2)
    trains = [flags for task, flags in asked if task == "train"]
    assert trains == ["--precision=float32", "--precision=bfloat16",
                      "--precision=bfloat16", "--precision=float32"] * 2
    entry = part["models"]["cifar10"]
    assert entry["float32"]["fraction_of_peak"] == pytest.approx(2000 * 0.1 / 200)
    assert entry["bfloat16"]["fraction_of_peak"] == pytest.approx(3000 * 0.1 / 400)
    assert entry["bfloat16_over_float32"] == pytest.approx(1.5)
    table = precisions.table(part)
    assert "| cifar10 tutorial | float32 | 2,000 (2,000 / 2,000) | 200 | 100% |  |" in table
    assert "| mnist cnn | bfloat16 | 3,000 (3,000 / 3,000) | 400 | 75% | 1.50x |" in table


def test_the_peer_is_the_fastest_setting_with_our_kernels():
    bench = _bench()
    tried = [dict(spe=1, jit=False, onednn="", examples_per_sec=400.0),
             dict(spe=10, jit=True, onednn="", examples_per_sec=480.0),
             dict(spe=50, jit=False, onednn="", examples_per_sec=470.0),
             dict(spe=1, jit=False, onednn="tf_default", examples_per_sec=900.0)]
    for t in tried:
        t["label"] = bench.peer_label(t)
    peer = bench.select_peer(tried)
    assert (peer["spe"], peer["jit"]) == (10, True)
    assert peer["label"] == "steps_per_execution=10, XLA, oneDNN as ours"


def test_a_ratio_whose_rounds_overlap_is_not_resolved_and_never_met():
    bench = _bench()
    apart = bench.compare([1300.0, 1250.0, 1320.0, 1280.0, 1310.0],
                          [1000.0, 1050.0, 990.0, 1020.0, 1010.0])
    assert apart["faster"] == "ours" and apart["median"] == 1300.0 / 1010.0
    assert apart["low"] == 1250.0 / 1050.0 and apart["high"] == 1320.0 / 990.0
    assert bench.verdict(apart["low"], apart["high"], 1.10) == "met"
    assert bench.verdict(apart["low"], apart["high"], 1.40) == "not met"
    overlap = bench.compare([1178.0, 1610.0, 2290.0], [1723.0, 2203.0, 2353.0])
    assert overlap["faster"] == "not resolved"
    assert bench.verdict(overlap["low"], overlap["high"], 1.10) == "not resolved"
    slower = bench.compare([900.0, 910.0], [1000.0, 1010.0])
    assert slower["faster"] == "peer"
    assert bench.verdict(slower["low"], slower["high"], 1.10) == "not met"


def _results(bench):
    configs = [dict(spe=spe, jit=jit, onednn="", examples_per_sec=900.0 + spe + 5 * jit)
               for jit in (False, True) for spe in (1, 10, 50)]
    configs.append(dict(spe=1, jit=False, onednn="tf_default", examples_per_sec=700.0))
    for c in configs:
        c["label"] = bench.peer_label(c)
    model = {"ours_examples_per_sec": 1000.0, "peer_examples_per_sec": 1000.0,
             "pipeline_examples_per_sec": 50000.0, "pipeline_headroom": 50.0,
             "gflops_per_example": 0.1, "fraction_of_peak": 0.5, "eval_pass_secs": 3.0,
             "keras_configs": configs, "peer": bench.select_peer(configs),
             "ours_runs": [990.0, 1000.0, 1010.0], "peer_runs": [1100.0, 1000.0, 900.0],
             "onednn_off_ours_examples_per_sec": 600.0,
             "onednn": {"ours": True, "peer": True}}
    model["ratio_ours_over_peer"] = bench.compare(model["ours_runs"], model["peer_runs"])
    fast = dict(model, ours_runs=[1300.0, 1320.0, 1310.0], fraction_of_peak=0.65)
    fast["ratio_ours_over_peer"] = bench.compare(fast["ours_runs"], fast["peer_runs"])
    return {"date": "2026-11-23T00:00:00+00:00", "mode": "full", "rounds": 3,
            "window_secs": 30,
            "machine": {"cpu": "AMD EPYC", "cores": 2, "tensorflow": "2.21.0"},
            "matmul_peak_gflops": 200.0,
            "matmul_peaks_gflops": {"eigen": 150.0, "onednn": 200.0},
            "models": {"cifar10": model, "mnist": fast},
            "evaluator_beside": {"dataset": "cifar10", "eval_interval_secs": 30,
                                 "window_secs": 120, "evaluator_flags": "--num_threads=1",
                                 "alone_examples_per_sec": [1000.0],
                                 "beside_examples_per_sec": [980.0], "slowdown": 0.02,
                                 "evaluations_per_window": [3],
                                 "cores_used": {"trainer_alone": [1.9],
                                                "trainer_beside": [1.8],
                                                "evaluator": [0.1]},
                                 "alternatives": [{
                                     "evaluator_flags": "--priority=normal", "slowdown": 0.3,
                                     "beside_examples_per_sec": 700.0,
                                     "evaluations_per_window": 4,
                                     "trainer_cores_used": 1.4,
                                     "evaluator_cores_used": 0.6}]}}


def test_table_shows_every_figure_and_results_json_keeps_the_targets():
    bench = _bench()
    results = _results(bench)
    results["targets"] = bench.check_targets(results)
    met = {t["name"]: t["met"] for t in results["targets"]}
    assert met == {"trainer / best Keras, cifar10 tutorial": "not resolved",
                   "trainer / best Keras, mnist cnn": "met",
                   "cifar10 tutorial step, fraction of matmul peak": "not met",
                   "mnist cnn step, fraction of matmul peak": "met",
                   "input pipeline headroom, cifar10": "met",
                   "input pipeline headroom, mnist": "met",
                   "slowdown with an evaluator beside": "met"}
    table = bench.table(results)
    assert "| steps_per_execution=50, XLA, oneDNN as ours | 955 (the peer) | 955 (the peer) |" \
        in table
    assert "| steps_per_execution=1, no XLA, TensorFlow's default kernels | 700 | 700 |" in table
    assert "| ours / the Keras peer | 1.00 (0.90-1.12; faster: **not resolved**) | " \
           "1.31 (1.18-1.47; faster: ours) |" in table
    assert "fp32 matmul peak 200 GFLOP/s (eigen 150, onednn 200)" in table
    assert "oneDNN: ours on, the Keras peer on." in table
    assert "| the Keras peer, each round | 1,100 / 1,000 / 900 |" in table
    assert "| ours with oneDNN off (TF_ENABLE_ONEDNN_OPTS=0), examples/s | 600 | 600 |" in table
    assert "| our trainer, each round | 990 / 1,000 / 1,010 | 1,300 / 1,320 / 1,310 |" in table
    assert "3 interleaved rounds of 30-s windows" in table
    assert "| target |" not in table and "not met" not in table  # verdicts: results.json only
    assert "slowdown 2.0%" in table
    assert "trainer alone 1.90; trainer beside 1.80; evaluator 0.10." in table
    assert ("With --priority=normal instead: 700 examples/s, slowdown 30.0%, 4 evaluations per window; "
            "cores used: trainer 1.40, evaluator 0.60.") in table
    # An evaluator that made no evaluation in a window measured no cost of evaluating.
    results["evaluator_beside"]["evaluations_per_window"] = [3, 0]
    (slowdown,) = [t for t in bench.check_targets(results) if "evaluator" in t["name"]]
    assert slowdown["met"] == "not met"
    assert slowdown["why"] == "a window with no evaluation in it"


def test_table_of_an_earlier_results_file_says_to_run_again(tmp_path):
    old = tmp_path / "results.json"
    old.write_text(json.dumps({"models": {"cifar10": {"ours_examples_per_sec": 1.0}}}))
    result = subprocess.run([sys.executable, BENCH, f"--table={old}"], capture_output=True,
                            text=True, timeout=120, cwd=helpers.REPO)
    helpers.assert_one_clear_line(result, "written by an earlier benchmark", "make bench")


def test_step_ab_alternates_settings_each_from_the_defaults(mnist_data):
    """benchmarks/step_ab.py: one trainer per setting, every setting parsed from the
    dataset's defaults (not from the setting before it), each timed every round."""
    result = subprocess.run(
        [sys.executable, os.path.join(helpers.REPO, "benchmarks", "step_ab.py"), "--dataset=mnist",
         f"--data_dir={mnist_data}", "--rounds=2", "--steps=3",
         "--setting=--validation_size=100", "--setting=--validation_size=100 --batch_size=8",
         "--setting=--validation_size=100"],
        capture_output=True, text=True, timeout=300, env=helpers.cli_env(), cwd=helpers.REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert [row["batch_size"] for row in report["results"]] == [64, 8, 64]
    assert all(row["examples_per_sec"] > 0 for row in report["results"])
    assert report["results"][0]["ratio_median"] == 1.0


def test_step_ab_ratios_are_per_round_and_within_noise_only_when_the_quartiles_hold_1():
    sys.path.insert(0, os.path.join(helpers.REPO, "benchmarks"))
    import step_ab
    rows = step_ab.compare([[100, 50, 100, 50, 100], [110, 56, 111, 54, 112],
                            [90, 52, 104, 49, 98]])
    assert rows[0]["examples_per_sec"] == 100 and rows[0]["ratio_median"] == 1.0
    # Each round's ratio: 1.10, 1.12, 1.11, 1.08, 1.12, whatever the drift between rounds.
    assert abs(rows[1]["ratio_median"] - 1.11) < 1e-9 and not rows[1]["within_noise"]
    assert rows[2]["within_noise"]


def test_step_parts_times_each_part_of_the_real_step(mnist_data):
    result = subprocess.run(
        [sys.executable, os.path.join(helpers.REPO, "benchmarks", "step_parts.py"),
         "--dataset=mnist", f"--data_dir={mnist_data}", "--rounds=2", "--steps=3",
         "--flags=--validation_size=100"],
        capture_output=True, text=True, timeout=300, env=helpers.cli_env(), cwd=helpers.REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(report["parts"]) == ["input", "forward", "forward+gradients", "full step",
                                     "Keras peer's step"]
    assert report["ours_over_keras"]["median"] > 0
    assert all(row["ms_per_step"] > 0 for row in report["parts"].values())
    assert report["parts"]["full step"]["share_of_full_step"] == 1.0
    assert report["model"] == "cnn" and report["batch_size"] == 64


def test_step_parts_measures_the_trainers_own_loss_and_gradients(mnist_data, tmp_path):
    """The model part step_parts times is the trainer's: the same loss (penalty and label
    smoothing included) and the gradients its update applies."""
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, os.path.join(helpers.REPO, "benchmarks"))
    import step_parts
    from trainkit import loop
    from trainkit import registry
    config = helpers.train_config("mnist", mnist_data, train_dir=str(tmp_path),
                                  l2_regularization=0.01, label_smoothing=0.1)
    trainer = loop.Trainer(config, registry.load("mnist"))
    images, labels = next(iter(trainer.dataset))
    _, gradients_of = step_parts.part_functions(trainer)
    loss, grads = gradients_of(images, labels)
    before = [v.numpy() for v in trainer.model.trainable_variables]
    batch = iter(tf.data.Dataset.from_tensors((images, labels)).repeat())
    total_loss = trainer.train_steps(batch, tf.constant(1, tf.int64))[1]
    np.testing.assert_allclose(float(total_loss), float(loss), rtol=1e-5)
    for w0, g, v in zip(before, grads, trainer.model.trainable_variables):
        np.testing.assert_allclose(v.numpy(), w0 - config.learning_rate * g.numpy(),
                                   rtol=1e-4, atol=1e-6)
    trainer.close()


def test_step_parts_shares_and_ceiling():
    sys.path.insert(0, os.path.join(helpers.REPO, "benchmarks"))
    import step_parts
    report = step_parts.summarize({"input": [1, 2, 1], "forward": [4, 4, 5],
                                   "forward+gradients": [9, 9.5, 10], "full step": [10, 10, 12],
                                   "Keras peer's step": [11, 9, 13.2]})
    assert report["parts"]["forward"] == {"ms_per_step": 4, "share_of_full_step": 0.4}
    assert report["parts"]["full step"]["share_of_full_step"] == 1.0
    assert abs(report["full_over_forward_and_gradients"] - 10 / 9.5) < 1e-12
    # Ours's speed over the peer's, round by round: 1.1, 0.9, 1.1.
    assert abs(report["ours_over_keras"]["median"] - 1.1) < 1e-12


@pytest.mark.parametrize("script, flags", [
    ("step_ab.py", ["--setting=--validation_size=100",
                    "--setting=--validation_size=100 --batch_sise=8"]),
    ("step_parts.py", ["--flags=--validation_size=100 --batch_sise=8"])])
def test_the_step_rigs_say_in_one_line_which_flag_is_wrong(mnist_data, script, flags):
    result = subprocess.run(
        [sys.executable, os.path.join(helpers.REPO, "benchmarks", script), "--dataset=mnist",
         f"--data_dir={mnist_data}", "--rounds=1", *flags],
        capture_output=True, text=True, timeout=300, env=helpers.cli_env(), cwd=helpers.REPO)
    assert result.returncode == 2
    lines = helpers.error_lines(result.stderr)
    assert len(lines) == 1 and "batch_sise" in lines[0], result.stderr[-2000:]


def test_evaluator_priority_reads_lags_and_scores_before_done_from_a_runs_files(tmp_path):
    """benchmarks/evaluator_priority.py's reading of a run, on files with set times: a
    checkpoint's lag is its record's time minus its .index file's, scored before DONE or
    not, skipped or never scored; the table is built from the runs."""
    sys.path.insert(0, helpers.REPO)
    from benchmarks import evaluator_priority
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)

    def touch(name, when):
        (run / name).write_text("x")
        os.utime(run / name, (when, when))

    touch("config.json", 1000.0)
    for step, saved in ((600, 1010.0), (1200, 1020.0), (1800, 1030.0), (2400, 1040.0)):
        touch(f"ckpt-{step}.index", saved)
    touch("DONE", 1040.5)
    records = [{"step": 600, "wall_time": 1012.5, "precision_at_1": 0.9},
               {"step": 1200, "skipped": "behind", "wall_time": 1031.0},
               {"step": 1800, "wall_time": 1031.0, "precision_at_1": 0.95},
               {"step": 2400, "wall_time": 1043.0, "precision_at_1": 0.99}]
    (run / "eval" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    measured = evaluator_priority.measure(str(run))
    assert measured == {"trainer_secs": 40.5, "checkpoints": [600, 1200, 1800, 2400],
                        "lag_secs": [2.5, None, 1.0, 3.0], "scored_before_done": 2,
                        "skipped": 1}
    alone = dict(measured, trainer_secs=40.0)
    runs = {condition: {"None": [alone], **{p: [dict(measured, evaluator_finished=True)]
                                            for p in evaluator_priority.PRIORITIES}}
            for condition in evaluator_priority.CONDITIONS}
    summary = evaluator_priority.summarize(runs, rounds=1)
    idle = summary["conditions"]["alone"]["idle"]
    assert idle["slowdown"] == pytest.approx(40.5 / 40.0 - 1)
    assert (idle["median_lag_secs"], idle["max_lag_secs"]) == (2.5, 3.0)
    assert (idle["scored_before_done"], idle["unscored"]) == ([2], [1])
    assert "| busy | low | +1.2% | 2.5 s / 3.0 s | 2 of 4 | 1 |" in \
        evaluator_priority.table(summary)


def test_gelu_bench_times_both_gelus_in_both_precisions():
    result = subprocess.run(
        [sys.executable, os.path.join(helpers.REPO, "benchmarks", "gelu_bench.py"),
         "--batch_size=4", "--rounds=1"], capture_output=True, text=True, timeout=300,
        env=helpers.cli_env(), cwd=helpers.REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()
            if line.split() and line.split()[0] in ("bfloat16", "float32")}
    assert set(rows) == {"bfloat16", "float32"}
    # One bfloat16 rounding apart at most; float32's equal to rounding.
    assert float(rows["bfloat16"][-1]) < 2 ** -7 and float(rows["float32"][-1]) < 1e-5
