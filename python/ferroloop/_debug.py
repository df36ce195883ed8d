"""Debug-mode helpers the native core calls; none of them runs outside debug mode."""

import sys

from asyncio import coroutines, format_helpers
# asyncio's own module logger, looked up per call: code (and tests) may
# replace it, as with the stdlib loop.
from asyncio import base_events as _logging_module


def extract_stack():
    # Frame 1 is the code that called into the loop (the native core adds no frame).
    return format_helpers.extract_stack(sys._getframe(1))


# asyncio's own test, without the DeprecationWarning the public name gives on 3.14+.
iscoroutinefunction = getattr(coroutines, '_iscoroutinefunction', coroutines.iscoroutinefunction)


def check_callback(callback, method):
    if coroutines.iscoroutine(callback) or iscoroutinefunction(callback):
        raise TypeError(f"coroutines cannot be used with {method}()")
    if not callable(callback):
        raise TypeError(
            f'a callable object was expected by {method}(), got {callback!r}')


def format_handle(handle):
    # A task's step is best named by the task itself.
    cb = handle._callback
    owner = getattr(cb, '__self__', None)
    import asyncio
    if isinstance(owner, asyncio.Task):
        return repr(owner)
    return str(handle)


def log_slow_callback(handle, seconds):
    _logging_module.logger.warning('Executing %s took %.3f seconds', format_handle(handle), seconds)
