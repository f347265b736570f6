"""The loop's actions on their own, with an injected clock: no training needed."""

import json

from trainkit import actions


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
        assert checkpointer.after_step(step, stop_requested=False) == (None, False)
    checkpointer.final(25)
    checkpointer.final(25)
    assert saved == [10, 20, 25] and checkpointer.last_saved == 25
    # A resumed run has its first step saved already; the end at that step saves nothing.
    again = actions.Checkpointer(saved.append, 10, 0, start_step=25, resumed=True)
    again.final(25)
    assert saved == [10, 20, 25]


def test_checkpointer_passes_a_stop_request_on_and_saves_on_a_signal():
    saved = []
    checkpointer = actions.Checkpointer(saved.append, 0, 0, start_step=0, resumed=False)
    assert checkpointer.after_step(3, stop_requested=True) == (None, True)
    checkpointer.signals.received = 15  # SIGTERM, as the handler records it
    assert checkpointer.after_step(4, stop_requested=False) == ("SIGTERM", False)
    assert saved == []  # the loop ends, and its final save writes step 4
    checkpointer.final(4)
    assert saved == [4]


def test_log_progress_leaves_excluded_time_out_of_the_speed(caplog):
    clock = Clock()
    config = type("Config", (), {"batch_size": 10, "max_steps": 100})()
    progress = actions.LogProgress(5, 0, config, steps_per_epoch=50,
                                   check_finite=lambda: None, clock=clock)
    clock.now = 3.0
    progress.exclude(2.0)  # two of the three seconds went to validation
    with caplog.at_level("INFO"):
        progress(5, (0.25,))
    assert "step 5, loss = 0.2500 (epoch 0.10; 50.0 examples/sec; 0.2000 sec/batch; " \
           "ETA 19 s to step 100)" in caplog.text


def test_log_progress_gives_a_first_eta_whichever_call_logs_first(caplog):
    config = type("Config", (), {"batch_size": 10, "max_steps": 100})()
    for every_steps, steps in ((5, (5, 7)), (20, (5, 10)), (5, (12, 24))):
        clock = Clock()
        progress = actions.LogProgress(every_steps, 0, config, steps_per_epoch=50,
                                       check_finite=lambda: None, clock=clock)
        caplog.clear()
        with caplog.at_level("INFO"):
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
