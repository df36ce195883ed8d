"""A patched ``loop.time`` drives the timers, as with asyncio, whose
scheduler asks ``self.time()`` (``mock.patch.object(loop, 'time')``, the
looptime plugin); unpatched, ferroloop's native clock is used again."""

import asyncio
from unittest import mock

import ferroloop

# No asyncio.wait_for around these: its own timer would run on the patched
# clock too.


def test_timers_follow_a_patched_loop_time(loop):
    fired = []
    now = [1000.0]

    async def main():
        with mock.patch.object(loop, 'time', side_effect=lambda: now[0]):
            h = loop.call_later(3600, fired.append, 'later')
            # call_later counts from the patched clock, as asyncio's does.
            assert h.when() == 4600.0
            loop.call_at(1500.0, fired.append, 'at')
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert fired == []
            now[0] = 5000.0      # an hour and more "passes" at once
            for _ in range(3):
                await asyncio.sleep(0)
            assert fired == ['at', 'later']

    loop.run_until_complete(main())


def test_unpatching_returns_to_the_real_clock(loop):
    async def main():
        with mock.patch.object(loop, 'time', return_value=0.0):
            pass
        h = loop.call_later(0.01, lambda: None)
        assert abs(h.when() - loop.time()) < 1
        await asyncio.sleep(0.01)

    loop.run_until_complete(main())


class _ShiftedLoop(ferroloop.Loop):
    def time(self):
        return super().time() + 10_000.0


def test_a_subclass_overriding_time_drives_the_timers():
    lp = _ShiftedLoop()
    try:
        h = lp.call_later(5, lambda: None)
        assert h.when() > 10_000.0
        h.cancel()
        lp.run_until_complete(asyncio.sleep(0.01))
    finally:
        lp.close()
