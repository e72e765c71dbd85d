"""The debouncer of the listener: few firings for a burst, none lost at its end."""

from sync.changes.debounce import Debouncer


def fire_times(notices: list[float], until: float, step: float = 0.01) -> list[float]:
    """Feed notices at the given times and poll due() every step; return when it fired."""
    debouncer: Debouncer[str] = Debouncer(window=0.15, max_delay=2.0)
    fired, pending, now = [], sorted(notices), 0.0
    while now <= until:
        while pending and pending[0] <= now:
            if debouncer.notice("db", pending.pop(0)):
                fired.append(now)
        fired += [now for _ in debouncer.due(now)]
        now = round(now + step, 6)
    return fired


def test_a_lone_notice_fires_at_once_and_only_once():
    assert fire_times([1.0], until=5) == [1.0]


def test_a_burst_fires_on_its_first_and_after_its_last_notice():
    fired = fire_times([1.0 + i * 0.01 for i in range(50)], until=5)
    assert fired[0] == 1.0
    assert len(fired) == 2
    assert 1.49 + 0.15 <= fired[1] <= 1.49 + 0.17


def test_a_long_storm_fires_every_max_delay_and_after_it_ends():
    storm = [i * 0.01 for i in range(500)]  # 5 s, one notice every 10 ms
    fired = fire_times(storm, until=10)
    assert fired[0] == 0.0
    assert 3 <= len(fired) <= 5
    assert fired[-1] >= 4.99 + 0.15


def test_again_fires_after_max_delay_when_the_last_firing_was_not_delivered():
    debouncer: Debouncer[str] = Debouncer(window=0.15, max_delay=2.0)
    debouncer.again("db", 10.0)
    assert debouncer.due(11.0) == []
    assert debouncer.due(12.0) == ["db"]


def test_next_deadline_is_none_when_idle():
    debouncer: Debouncer[str] = Debouncer()
    assert debouncer.next_deadline() is None
    debouncer.notice("db", 1.0)
    assert debouncer.next_deadline() == 1.0 + debouncer.window
