from trainkit import periodic


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_fires_at_multiples_of_every_steps():
    action = periodic.PeriodicAction(every_steps=10)
    action.start(0)
    fired = [s for s in range(1, 36) if action.should_fire(s)]
    assert fired == [10, 20, 30]


def test_resumed_mid_interval_still_fires_at_round_steps():
    action = periodic.PeriodicAction(every_steps=10)
    action.start(37)
    assert [s for s in range(38, 62) if action.should_fire(s)] == [40, 50, 60]


def test_fires_by_time_with_injected_clock():
    clock = FakeClock()
    action = periodic.PeriodicAction(every_secs=5, clock=clock)
    action.start(0)
    assert not action.should_fire(1)
    clock.now = 4.9
    assert not action.should_fire(2)
    clock.now = 5.0
    assert action.should_fire(3)
    clock.now = 9.0
    assert not action.should_fire(4)
    clock.now = 10.0
    assert action.should_fire(5)


def test_disabled_never_fires():
    action = periodic.PeriodicAction(every_steps=0, every_secs=0)
    action.start(0)
    assert not any(action.should_fire(s) for s in range(1, 1000))
