"""The loop's actions on their own, with an injected clock: no training needed."""

import json

import pytest

from trainkit import actions
from trainkit import periodic


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_checkpointer_saves_by_steps_by_seconds_at_the_end_and_never_twice():
    saved = []
    checkpointer = actions.Checkpointer(saved.append, every_steps=10, every_secs=0,
                                        start_step=0, resumed=False)
    for step in range(1, 26):
        assert checkpointer(step, None) is None
    checkpointer.final(25)
    checkpointer.final(25)
    assert saved == [10, 20, 25] and checkpointer.last_saved == 25
    # A resumed run has its first step saved already; the end at that step saves nothing.
    again = actions.Checkpointer(saved.append, 10, 0, start_step=25, resumed=True)
    again.final(25)
    assert saved == [10, 20, 25]


def test_checkpointer_stops_on_a_stop_request_and_on_a_signal_which_comes_first(tmp_path):
    saved, stop_file = [], tmp_path / "STOP"
    checkpointer = actions.Checkpointer(saved.append, 0, 0, start_step=0, resumed=False,
                                        stop_file=str(stop_file))
    assert checkpointer(1, None) is None
    stop_file.write_text(json.dumps({"reason": "no improvement"}))
    checkpointer._stop_watch.periodic._last_time -= 10.0  # its second to the next look passed
    request = checkpointer(3, None)
    assert request == actions.Stop(f"stop requested in {stop_file} (no improvement)")
    checkpointer.signals.received = 15  # SIGTERM, as the handler records it
    signalled = checkpointer(4, None)
    assert signalled.signal == "SIGTERM"
    assert actions.more_urgent(request, signalled) is signalled
    assert actions.more_urgent(signalled, request) is signalled
    assert saved == []  # the loop ends, and its final save writes step 4
    checkpointer.final(4)
    assert saved == [4]


def test_something_that_is_not_an_action_is_named():
    with pytest.raises(TypeError, match="needs a periodic attribute"):
        actions.check([print])  # callable, but says nothing of when it is due
    saver = actions.Checkpointer(print, 0, 0, start_step=0, resumed=False)
    assert actions.check((saver,)) == [saver]


def test_steps_to_run_ends_a_call_where_an_action_is_due():
    due_at_7 = type("Action", (), {"periodic": periodic.PeriodicAction(every_steps=7)})
    assert actions.steps_to_run(0, 10, 100, [due_at_7]) == 7
    assert actions.steps_to_run(7, 10, 100, [due_at_7]) == 7
    assert actions.steps_to_run(14, 10, 16, []) == 2


def test_log_progress_leaves_excluded_time_out_of_the_speed(caplog):
    clock = Clock()
    config = type("Config", (), {"batch_size": 10, "max_steps": 100})()
    progress = actions.LogProgress(5, 0, config, steps_per_epoch=50,
                                   check_finite=lambda: None, clock=clock)
    clock.now = 3.0
    progress.exclude(2.0)  # two of the three seconds went to validation
    with caplog.at_level("INFO", logger="absl"):
        progress(5, (0.25,))
    assert "step 5/100: loss 0.2500, epoch 0.10, 50 examples/s, ETA 19 s" in caplog.text


def test_log_progress_eta_holds_steady_through_a_moment_of_load(caplog):
    """The ETA comes from the pace of the last minutes: a 10-step stretch three times slower
    (other work on the cores for a moment) moves it by a few percent, not threefold."""
    clock = Clock()
    config = type("Config", (), {"batch_size": 10, "max_steps": 10000})()
    progress = actions.LogProgress(10, 0, config, steps_per_epoch=50,
                                   check_finite=lambda: None, clock=clock)
    for step in range(10, 1001, 10):
        clock.now += 3.0 if step == 1000 else 1.0  # 0.1 s a step, then 0.3 s for ten
        with caplog.at_level("INFO", logger="absl"):
            caplog.clear()
            progress(step, (0.25,))
    line = caplog.records[-1].getMessage()
    assert "33 examples/s" in line  # the speed of that stretch, as it was
    # 9,000 steps at the pace since step 10 (101 s for 990 steps): 15 min 18 s, where the
    # last ten steps' pace alone would say 45 min.
    assert line.endswith("ETA 15 min 18 s"), line


def test_log_progress_gives_a_first_eta_whichever_call_logs_first(caplog):
    config = type("Config", (), {"batch_size": 10, "max_steps": 100})()
    for every_steps, steps in ((5, (5, 7)), (20, (5, 10)), (5, (12, 24))):
        clock = Clock()
        progress = actions.LogProgress(every_steps, 0, config, steps_per_epoch=50,
                                       check_finite=lambda: None, clock=clock)
        caplog.clear()
        with caplog.at_level("INFO", logger="absl"):
            for step in steps:
                clock.now += 1.0
                progress(step, (0.25,))
        assert "ETA" in caplog.text, (every_steps, steps)


def test_stop_request_says_why(tmp_path):
    path = tmp_path / "STOP"
    watch = actions.WatchStopRequest(str(path), start_step=0)
    path.write_text(json.dumps({"reason": "3 evaluations without improving"}))
    assert watch.reason() == f"stop requested in {path} (3 evaluations without improving)"
    path.unlink()
    assert watch.reason() == "stop requested by the chief"


def test_cpu_watch_speaks_once_a_busy_process_got_no_cpu_for_its_window():
    """The evaluator's watch, with injected clocks: silent while idle or fed, one line once
    starved for 30 s, and again only after the CPU came back and went again."""
    from trainkit import priority
    wall, cpu, said = Clock(), Clock(), []
    watch = priority.CpuWatch(lambda secs, share: said.append((secs, share)), window=30.0,
                              share=0.05, clock=wall, cpu_time=cpu)

    def tick(seconds, cpu_seconds, busy=True):
        watch.busy = busy
        wall.now += seconds
        cpu.now += cpu_seconds
        watch.check()

    for _ in range(10):
        tick(5, 0.0, busy=False)  # waiting for a checkpoint: no CPU needed, nothing said
    for _ in range(10):
        tick(5, 4.0)  # scoring with most of a core
    assert said == []
    for _ in range(14):
        tick(5, 0.01)  # scoring, but the cores are taken: 0.2% of a core for 70 s
    assert said == [(pytest.approx(30.0), pytest.approx(0.002))]
    for _ in range(7):
        tick(5, 3.0)  # the CPU comes back
    for _ in range(7):
        tick(5, 0.0)  # and goes again
    assert len(said) == 2


def test_why_starved_names_the_priority_and_its_remedy():
    from trainkit import priority
    assert "pass --priority=low" in priority.why_starved("idle")
    assert "pass --priority=normal" in priority.why_starved("low")
    assert "other processes hold the cores (load average" in priority.why_starved("normal")
