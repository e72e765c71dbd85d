"""Debounce bursts of notices per key: fire on the first, every MAX_DELAY, and after the last."""

from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K")

# A burst is notices less than WINDOW apart. The first fires at once (a lone DDL shows within
# the time of one reflection); later ones fire once the burst is quiet for WINDOW, and at least
# every MAX_DELAY while it lasts, so that a migration of 500 statements costs a few reflections
# and a long one still shows progress.
WINDOW = 0.15
MAX_DELAY = 2.0


@dataclass
class _Burst:
    last: float  # the latest notice
    fired: float  # when it last fired
    pending: bool = False  # notices since it last fired


class Debouncer(Generic[K]):
    def __init__(self, window: float = WINDOW, max_delay: float = MAX_DELAY) -> None:
        self.window, self.max_delay = window, max_delay
        self._bursts: dict[K, _Burst] = {}

    def notice(self, key: K, now: float) -> bool:
        """Record a notice; True if it opens a burst and so fires now."""
        burst = self._bursts.get(key)
        if burst is None:
            self._bursts[key] = _Burst(last=now, fired=now)
            return True
        burst.last, burst.pending = now, True
        return False

    def again(self, key: K, now: float) -> None:
        """Fire once more after MAX_DELAY: the firing just made could not be delivered."""
        burst = self._bursts.setdefault(key, _Burst(last=now, fired=now))
        # As if it had just fired and a notice were still to come after MAX_DELAY.
        burst.fired, burst.last, burst.pending = now, now + self.max_delay, True

    def due(self, now: float) -> list[K]:
        """Return the keys to fire now; forget bursts that ended."""
        fire = []
        for key, burst in list(self._bursts.items()):
            if burst.pending and (
                now - burst.last >= self.window or now - burst.fired >= self.max_delay
            ):
                fire.append(key)
                burst.fired, burst.pending = now, False
            elif not burst.pending and now - burst.last >= self.window:
                del self._bursts[key]
        return fire

    def next_deadline(self) -> float | None:
        """Return the earliest time at which due() may have something to do."""
        deadlines = [
            min(b.last + self.window, b.fired + self.max_delay)
            if b.pending
            else b.last + self.window
            for b in self._bursts.values()
        ]
        return min(deadlines, default=None)
