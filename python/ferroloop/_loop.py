"""The event loop: ``ferroloop.Loop``.

The native base ``LoopCore`` holds the ready queue, timers, fd watchers and
the poll. This class adds what runs once per loop or once per call to a rare
API: running until a future completes, the exception handler, the default
executor, async-generator hooks, and the ``sock_*`` / resolver / signal
families from their own modules.
"""

import asyncio
import concurrent.futures
import sys
import threading
import traceback
import warnings
import weakref

from asyncio import coroutines, events, futures, tasks
# asyncio's own module logger, looked up per call: code (and tests) may
# replace it, as with the stdlib loop.
from asyncio import base_events as _logging_module

from ._ferroloop import LoopCore
from . import _metrics, _usage_report
from ._resolver import ResolverMixin
from ._signals import SignalMixin
from ._sock import SockMixin
from ._connect import ConnectMixin
from ._server import ServerMixin
from ._tls import TLSMixin
from ._datagram import DatagramMixin
from ._pipes import PipeMixin
from ._process import SubprocessMixin


def _run_until_complete_cb(fut):
    if not fut.cancelled():
        exc = fut.exception()
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            # run_forever() will see it too; stopping here would lose it.
            return
    fut.get_loop().stop()


class Loop(LoopCore, SockMixin, ResolverMixin, SignalMixin, ConnectMixin, ServerMixin,
           TLSMixin, DatagramMixin, PipeMixin, SubprocessMixin,
           asyncio.AbstractEventLoop):
    """asyncio's event loop, with its core in Rust."""

    def __init__(self):
        self._exception_handler = None
        self._default_executor = None
        self._executor_shutdown_called = False
        self._asyncgens = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self._signal_handlers = {}
        self._on_slow_callback = None
        # fd -> weak reference to the transport using it, so add_reader & co.
        # can refuse those fds; a transport drops its entry when its
        # connection is lost (track_transport / forget_transport).
        self._transports = {}
        # asyncio's own rule (-X dev, PYTHONASYNCIODEBUG), looked up per loop.
        self.set_debug(coroutines._is_debug_mode())
        if type(self).time is not LoopCore.time:
            self._set_time_overridden(True)

    # Tests drive time by patching ``loop.time`` on the instance
    # (mock.patch.object, the looptime plugin); asyncio's scheduler calls
    # self.time(), so the native one must too while it is patched.
    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        if name == 'time':
            self._set_time_overridden(True)

    def __delattr__(self, name):
        super().__delattr__(name)
        if name == 'time':
            self._set_time_overridden(type(self).time is not LoopCore.time)

    def __repr__(self):
        return (f'<{self.__class__.__name__} running={self.is_running()} '
                f'closed={self.is_closed()} debug={self.get_debug()}>')

    # -- running -----------------------------------------------------------

    def _check_closed(self):
        if self.is_closed():
            raise RuntimeError('Event loop is closed')

    def _check_running(self):
        if self.is_running():
            raise RuntimeError('This event loop is already running')
        if events._get_running_loop() is not None:
            raise RuntimeError(
                'Cannot run the event loop while another loop is running')

    def run_forever(self):
        self._check_closed()
        self._check_running()
        if _usage_report.PATH is not None:
            _usage_report.record(self)   # under `python -m ferroloop run`: ferroloop was used
        self._set_coroutine_origin_tracking(self.get_debug())
        old_agen_hooks = sys.get_asyncgen_hooks()
        try:
            sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook,
                                   finalizer=self._asyncgen_finalizer_hook)
            events._set_running_loop(self)
            self._run()
        finally:
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)

    def run_until_complete(self, future):
        self._check_closed()
        self._check_running()
        new_task = not futures.isfuture(future)
        future = tasks.ensure_future(future, loop=self)
        if new_task:
            # Its exception reaches the caller; no "never retrieved" warning.
            future._log_destroy_pending = False
        future.add_done_callback(_run_until_complete_cb)
        try:
            self.run_forever()
        except BaseException:
            if new_task and future.done() and not future.cancelled():
                future.exception()  # consumed: the caller has no handle on the task
            raise
        finally:
            future.remove_done_callback(_run_until_complete_cb)
        if not future.done():
            raise RuntimeError('Event loop stopped before Future completed.')
        return future.result()

    def close(self):
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self.get_debug():
            _logging_module.logger.debug("Close %r", self)
        if not sys.is_finalizing():
            for sig in list(self._signal_handlers):
                self.remove_signal_handler(sig)
        elif self._signal_handlers:
            warnings.warn(f"Closing the loop {self!r} on interpreter shutdown "
                          f"stage, skipping signal handlers removal",
                          ResourceWarning, source=self)
            self._signal_handlers.clear()
        self._close_core()
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

    def enable_metrics(self, *, slow_callback_duration=0.1, on_slow_callback=None):
        """Starts counting what the loop does (``metrics()`` reads it).

        A callback or task step that runs *slow_callback_duration* seconds
        or longer is logged as a warning on asyncio's logger with where it
        was scheduled, then passed to *on_slow_callback* as a
        ``SlowCallback``, if given; None reports none. Calling it again
        changes these and keeps the counts.
        """
        if slow_callback_duration is not None:
            if isinstance(slow_callback_duration, bool) or not isinstance(slow_callback_duration, (int, float)):
                raise TypeError(f'slow_callback_duration must be a number or None, '
                                f'not {type(slow_callback_duration).__name__}')
            if not slow_callback_duration >= 0:
                raise ValueError(f'slow_callback_duration must be >= 0, not {slow_callback_duration!r}')
        if on_slow_callback is not None and not callable(on_slow_callback):
            raise TypeError('on_slow_callback must be a callable or None')
        self._on_slow_callback = on_slow_callback
        self._enable_metrics(None if slow_callback_duration is None else float(slow_callback_duration))

    def disable_metrics(self):
        """Stops counting and forgets the counts."""
        self._on_slow_callback = None
        self._disable_metrics()

    def metrics(self):
        """A ``LoopMetrics`` snapshot of the counts since ``enable_metrics()``;
        RuntimeError if metrics are off. Still answers after ``close()``."""
        return _metrics.snapshot(self)

    def __del__(self, _warn=warnings.warn):
        try:
            closed = self.is_closed()
        except AttributeError:
            return
        if not closed:
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not self.is_running():
                self.close()

    def _set_coroutine_origin_tracking(self, enabled):
        if bool(enabled) == bool(self._coroutine_origin_tracking_enabled):
            return
        if enabled:
            self._coroutine_origin_tracking_saved_depth = (
                sys.get_coroutine_origin_tracking_depth())
            sys.set_coroutine_origin_tracking_depth(
                asyncio.coroutines._DEBUG_STACK_DEPTH
                if hasattr(asyncio.coroutines, '_DEBUG_STACK_DEPTH') else 10)
        else:
            sys.set_coroutine_origin_tracking_depth(
                self._coroutine_origin_tracking_saved_depth)
        self._coroutine_origin_tracking_enabled = enabled

    # -- watching file descriptors -------------------------------------------

    def add_reader(self, fd, callback, *args):
        self._ensure_fd_no_transport(fd)
        self._add_reader(fd, callback, *args)

    def remove_reader(self, fd):
        self._ensure_fd_no_transport(fd)
        return self._remove_reader(fd)

    def add_writer(self, fd, callback, *args):
        self._ensure_fd_no_transport(fd)
        self._add_writer(fd, callback, *args)

    def remove_writer(self, fd):
        self._ensure_fd_no_transport(fd)
        return self._remove_writer(fd)

    # -- tasks -------------------------------------------------------------

    def _create_task_from_factory(self, factory, coro, name, context):
        # The native create_task handles the common case of no factory.
        if context is None:
            task = factory(self, coro)
        else:
            task = factory(self, coro, context=context)
        if sys.version_info >= (3, 13):
            task.set_name(name)
        elif name is not None:
            try:
                task.set_name(name)
            except AttributeError:
                warnings.warn("Task.set_name() was added in Python 3.8, "
                              "the method support will be mandatory for third-party "
                              "task implementations since 3.13.",
                              DeprecationWarning, stacklevel=3)
        return task

    # -- async generators ----------------------------------------------------

    def _asyncgen_firstiter_hook(self, agen):
        if self._asyncgens_shutdown_called:
            warnings.warn(
                f"asynchronous generator {agen!r} was scheduled after "
                f"loop.shutdown_asyncgens() call",
                ResourceWarning, source=self)
        self._asyncgens.add(agen)

    def _asyncgen_finalizer_hook(self, agen):
        self._asyncgens.discard(agen)
        if not self.is_closed():
            self.call_soon_threadsafe(self.create_task, agen.aclose())

    async def shutdown_asyncgens(self):
        self._asyncgens_shutdown_called = True
        if not len(self._asyncgens):
            return
        agens = list(self._asyncgens)
        self._asyncgens.clear()
        results = await tasks.gather(*[ag.aclose() for ag in agens],
                                     return_exceptions=True)
        for result, agen in zip(results, agens):
            if isinstance(result, Exception):
                self.call_exception_handler({
                    'message': f'an error occurred during closing of '
                               f'asynchronous generator {agen!r}',
                    'exception': result,
                    'asyncgen': agen,
                })

    # -- executor ------------------------------------------------------------

    def _check_default_executor(self):
        if self._executor_shutdown_called:
            raise RuntimeError('Executor shutdown has been called')

    def run_in_executor(self, executor, func, *args):
        self._check_closed()
        if self.get_debug():
            from ._debug import check_callback
            check_callback(func, 'run_in_executor')
        if executor is None:
            executor = self._default_executor
            self._check_default_executor()
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(
                    thread_name_prefix='asyncio')
                self._default_executor = executor
        return futures.wrap_future(executor.submit(func, *args), loop=self)

    def set_default_executor(self, executor):
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            raise TypeError('executor must be ThreadPoolExecutor instance')
        self._default_executor = executor

    async def shutdown_default_executor(self, timeout=None):
        self._executor_shutdown_called = True
        if self._default_executor is None:
            return
        future = self.create_future()
        thread = threading.Thread(target=self._do_shutdown, args=(future,))
        thread.start()
        try:
            if timeout is None:
                await future
            else:
                await tasks.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            warnings.warn("The executor did not finishing joining "
                          f"its threads within {timeout} seconds.",
                          RuntimeWarning, stacklevel=2)
            self._default_executor.shutdown(wait=False)
        else:
            thread.join()

    def _do_shutdown(self, future):
        try:
            self._default_executor.shutdown(wait=True)
            if not self.is_closed():
                self.call_soon_threadsafe(futures._set_result_unless_cancelled,
                                          future, None)
        except Exception as ex:
            if not self.is_closed() and not future.cancelled():
                self.call_soon_threadsafe(future.set_exception, ex)

    # -- errors ----------------------------------------------------------------

    def get_exception_handler(self):
        return self._exception_handler

    def set_exception_handler(self, handler):
        if handler is not None and not callable(handler):
            raise TypeError(f'A callable object or None is expected, '
                            f'got {handler!r}')
        self._exception_handler = handler

    def default_exception_handler(self, context):
        message = context.get('message') or 'Unhandled exception in event loop'
        exception = context.get('exception')
        if exception is not None:
            exc_info = (type(exception), exception, exception.__traceback__)
        else:
            exc_info = False
        current = self._current_handle
        if ('source_traceback' not in context and current is not None
                and current._source_traceback):
            context['handle_traceback'] = current._source_traceback
        lines = [message]
        for key in sorted(context):
            if key in {'message', 'exception'}:
                continue
            value = context[key]
            if key in ('source_traceback', 'handle_traceback'):
                what = 'Object' if key == 'source_traceback' else 'Handle'
                value = (f'{what} created at (most recent call last):\n'
                         + ''.join(traceback.format_list(value)).rstrip())
            else:
                value = repr(value)
            lines.append(f'{key}: {value}')
        _logging_module.logger.error('\n'.join(lines), exc_info=exc_info)

    def call_exception_handler(self, context):
        if self._exception_handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                _logging_module.logger.error('Exception in default exception handler',
                             exc_info=True)
            return
        try:
            ctx = _handler_context(context)
            if ctx is None:
                self._exception_handler(self, context)
            else:
                ctx.run(self._exception_handler, self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler({
                    'message': 'Unhandled error in exception handler',
                    'exception': exc,
                    'context': context,
                })
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                _logging_module.logger.error('Exception in default exception handler '
                             'while handling an unexpected error '
                             'in custom exception handler',
                             exc_info=True)


def _handler_context(context):
    """The contextvars context a custom exception handler runs in, from
    Python 3.12 on: that of the task, future or handle that failed."""
    if sys.version_info < (3, 12):
        return None
    thing = context.get("task")
    if thing is None:
        # A Task is a Future, and sometimes sits under 'future'.
        thing = context.get("future")
    if thing is None:
        thing = context.get("handle")
    ctx = thing.get_context() if hasattr(thing, "get_context") else None
    return ctx if hasattr(ctx, "run") else None
