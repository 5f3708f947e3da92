"""The respawn policy of one slot: jittered exponential backoff and crash-loop detection."""

from __future__ import annotations

from supervisor.places import Slot

POLICY = dict(window_s=60.0, limit=4, base_s=0.5, cap_s=2.0)


def test_backoff_doubles_per_recent_exit_with_equal_jitter_and_a_cap() -> None:
    """Delays are base·2^(n−1) scaled into [0.5, 1.0], never above the cap."""
    slot = Slot(index=0)
    delays = []
    for now in (0.0, 1.0, 2.0):
        slot.record_abnormal_exit(now, jitter=lambda: 1.0, **POLICY)  # type: ignore[arg-type]
        delays.append(slot.next_spawn_at - now)
    assert delays == [0.5, 1.0, 2.0]
    slot.exits.clear()
    slot.record_abnormal_exit(10.0, jitter=lambda: 0.0, **POLICY)  # type: ignore[arg-type]
    assert slot.next_spawn_at == 10.25


def test_k_exits_within_the_window_mark_the_slot_crash_looping() -> None:
    """The K-th abnormal exit inside T seconds stops respawning; older exits do not count."""
    slot = Slot(index=0)
    for now in (0.0, 100.0, 101.0, 102.0):  # the first is outside the 60 s window by the end
        slot.record_abnormal_exit(now, **POLICY)  # type: ignore[arg-type]
    assert not slot.crash_looping
    slot.record_abnormal_exit(103.0, **POLICY)  # type: ignore[arg-type]
    assert slot.crash_looping
    slot.reset()
    assert not slot.crash_looping and not slot.exits
