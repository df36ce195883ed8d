"""The Python half every transport with a native core shares.

Stream, datagram and pipe transports each wrap a native core that does the
per-packet work; this base gives them the protocol accessors, the write
limits, and the error-reporting paths the cores call back into, written once.
Each transport keeps its own construction, repr and lifecycle.
"""

from asyncio import selector_events

# More than any buffer can hold: a larger (or infinite) mark is this one.
_MARK_CAP = 2 ** 62


def watermarks(high, low):
    """``set_write_buffer_limits(high, low)``'s arguments as asyncio takes them.

    asyncio's defaulting and check, so its errors come out for bad values,
    and any real numbers pass; handed to the core as whole numbers (a byte
    count passes a fractional mark exactly when it passes its floor). Both
    None leaves the default to the core, which knows its kind's.
    """
    if high is None and low is None:
        return None, None
    if high is None:
        high = 4 * low
    if low is None:
        low = high // 4
    if not high >= low >= 0:
        raise ValueError(f'high ({high!r}) must be >= low ({low!r}) must be >= 0')
    return _whole(high), _whole(low)


def _whole(mark):
    return _MARK_CAP if mark >= _MARK_CAP else int(mark)


class _CoreMethod:
    """One of the native core's methods, bound onto the instance on first use.

    The first access stores the core's bound method in the instance's dict,
    which shadows this non-data descriptor from then on: later calls run no
    Python frame. A connection binds only what it uses.
    """

    __slots__ = ('name',)

    def __init__(self, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        method = getattr(obj._core, self.name)
        obj.__dict__[self.name] = method
        return method


def core_methods(*names):
    """Class decorator: these methods of the transport are its core's own."""
    def decorate(cls):
        for name in names:
            setattr(cls, name, _CoreMethod(name))
        return cls
    return decorate


class CoreTransport:
    """Delegation to ``self._core`` and asyncio's error reporting."""

    _core = None
    # Where asyncio's transport of the same kind logs (looked up per call:
    # code may replace the logger), and its default fatal-error message.
    _logging_module = selector_events
    _FATAL_MESSAGE = 'Fatal error on transport'

    def set_protocol(self, protocol):
        self._core.set_protocol(protocol)

    def get_protocol(self):
        return self._core.get_protocol()

    @property
    def _protocol(self):
        return self._core.get_protocol() if self._core is not None else None

    @property
    def _closing(self):
        return self._core._closing

    @property
    def _conn_lost(self):
        return self._core._conn_lost

    @staticmethod
    def _quiet_error(exc):
        # asyncio logs OS errors only in debug mode and reports the rest.
        return isinstance(exc, OSError)

    def _close_after_error(self, exc):
        self._core._force_close(exc)

    def _fatal_error(self, exc, message=None):
        if message is None:
            message = self._FATAL_MESSAGE
        if self._quiet_error(exc):
            if self._loop.get_debug():
                self._logging_module.logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._report(message, exc)
        self._close_after_error(exc)

    def _protocol_call_failed(self, message, exc):
        self._report(message, exc)

    def _report(self, message, exc):
        self._loop.call_exception_handler({
            'message': message,
            'exception': exc,
            'transport': self,
            'protocol': self._core.get_protocol(),
        })

    def _log_debug(self, fmt):
        self._logging_module.logger.debug(fmt, self)

    def _log_info(self, fmt):
        self._logging_module.logger.info(fmt, self)

    def _log_warning(self, message):
        self._logging_module.logger.warning(message)


class CoreWriteFlow:
    """Write-buffer limits, for the transports that write."""

    def set_write_buffer_limits(self, high=None, low=None):
        self._core.set_write_buffer_limits(*watermarks(high, low))

    def get_write_buffer_limits(self):
        return self._core.get_write_buffer_limits()

    @property
    def _protocol_paused(self):
        return self._core._protocol_paused
