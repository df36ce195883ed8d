"""Values the loop is given come back as asyncio gives them back: set_debug
takes any value (tests pass 0 / 1), TimerHandle.when() returns the object
call_at got (an int stays an int)."""

import asyncio

import pytest


@pytest.mark.parametrize('value, expected', [(0, False), (1, True), ('', False), ([1], True)])
def test_set_debug_takes_any_value_and_keeps_its_truth(loop, value, expected):
    loop.set_debug(value)
    assert bool(loop.get_debug()) is expected


def test_timer_handle_when_returns_the_value_call_at_was_given(loop):
    now = int(loop.time())
    at_int = loop.call_at(now + 100, lambda: None)
    at_float = loop.call_at(now + 100.5, lambda: None)
    try:
        assert type(at_int.when()) is int and at_int.when() == now + 100
        assert type(at_float.when()) is float and at_float.when() == now + 100.5
        # Ordered by deadline whatever the type.
        assert at_int < at_float
    finally:
        at_int.cancel()
        at_float.cancel()


def test_call_later_deadline_is_a_float_from_the_clock(loop):
    h = loop.call_later(10, lambda: None)
    try:
        assert type(h.when()) is float
        assert h.when() - loop.time() == pytest.approx(10, abs=1)
    finally:
        h.cancel()
