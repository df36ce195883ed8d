"""Unix signal handlers: ``add_signal_handler`` / ``remove_signal_handler``.

Python's C-level handler writes the signal number to the loop's self-pipe
(``signal.set_wakeup_fd``); the native poll reads it and calls
``_handle_signal``, which queues a look-up of the handler; that look-up, run
with the iteration's other callbacks, queues the user's callback for the next
iteration. The two steps are asyncio's timing: its self-pipe reader is itself
a callback, so a handler replaced or removed by a callback queued before the
signal was seen is the one that counts.
"""

import errno
import signal

from asyncio import coroutines
# asyncio's own module logger, looked up per call: code (and tests) may
# replace it, as with the stdlib loop.
from asyncio import unix_events as _logging_module

from ._debug import iscoroutinefunction


def _sighandler_noop(signum, frame):
    """Installed so the signal is caught; the wake-up fd does the work."""


class SignalMixin:

    def _check_signal(self, sig):
        if not isinstance(sig, int):
            raise TypeError(f'sig must be an int, not {sig!r}')
        if sig not in signal.valid_signals():
            raise ValueError(f'invalid signal number {sig}')

    def add_signal_handler(self, sig, callback, *args):
        if coroutines.iscoroutine(callback) or iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        try:
            # Raises ValueError outside the main thread.
            signal.set_wakeup_fd(self._waker_fd())
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc))
        old = self._signal_handlers.get(sig)
        if not self._signal_handlers:
            self._watch_signals(True)
        self._signal_handlers[sig] = self._make_handle(callback, args)
        try:
            signal.signal(sig, _sighandler_noop)
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if old is not None:
                self._signal_handlers[sig] = old
            if not self._signal_handlers:
                self._reset_wakeup_fd()
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f'sig {sig:d} cannot be caught')
            raise
        # The replaced handle is not cancelled: as in asyncio, a call of it
        # already queued still runs.

    def _handle_signal(self, sig):
        # Called while the poll's events are processed, before this
        # iteration's callbacks: look the handler up only when they run.
        self._schedule_handle(self._make_handle(self._dispatch_signal, (sig,)))

    def _dispatch_signal(self, sig):
        handle = self._signal_handlers.get(sig)
        if handle is None:
            return
        if handle.cancelled():
            self.remove_signal_handler(sig)
        else:
            self._schedule_handle(handle)

    def remove_signal_handler(self, sig):
        self._check_signal(sig)
        try:
            del self._signal_handlers[sig]
        except KeyError:
            return False
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f'sig {sig:d} cannot be caught')
            raise
        if not self._signal_handlers:
            self._reset_wakeup_fd()
        return True

    def _reset_wakeup_fd(self):
        self._watch_signals(False)
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError) as exc:
            _logging_module.logger.info('set_wakeup_fd(-1) failed: %s', exc)
