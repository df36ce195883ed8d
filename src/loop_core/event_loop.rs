//! The loop core: ready queue, timer heap, fd watchers and the poll, and the
//! iteration that ties them together (asyncio's `BaseEventLoop._run_once`).
//!
//! The Python class `ferroloop.Loop` subclasses this and adds the once-per-loop
//! and once-per-connection parts of the API in Python.

use crate::loop_core::fastcall::{self, FastcallArgs, FastcallMethod};
use crate::loop_core::gil_cell::GilCell;
use crate::loop_core::handle::{Handle, RunError};
use crate::loop_core::loop_metrics::{LoopMetrics, TransportKind, TRANSPORT_KINDS};
use crate::loop_core::tick_clock::{self, Anchor};
use crate::io::os_error;
use crate::io::poller::{self, Events, Poller, READABLE, WRITABLE};
use crate::loop_core::timer_heap::TimerHeap;
use crate::io::waker::Waker;
use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyFloat, PyInt, PyTuple};
use pyo3::{PyTraverseError, PyVisit};
use std::collections::VecDeque;
use std::ffi::CStr;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// asyncio never sleeps longer than a day in one poll.
const MAXIMUM_SELECT_TIMEOUT: f64 = 24.0 * 3600.0;

static FUTURES_MODULE: PyOnceLock<Py<PyDict>> = PyOnceLock::new();
static TASKS_MODULE: PyOnceLock<Py<PyDict>> = PyOnceLock::new();
static DEBUG_HELPERS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
static METRICS_HELPERS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
/// `asyncio.Handle`, its version tag at the last lookup of `_run`, and
/// that `_run` if it is not asyncio's own.
struct HandleRunSeen {
    class: Py<PyAny>,
    tag: u32,
    replaced: Option<Py<PyAny>>,
}
static HANDLE_RUN_SEEN: GilCell<Option<HandleRunSeen>> = GilCell::new(None);

/// `asyncio.Handle._run` when something replaced it (tools that time
/// callbacks, e.g. logfire's and aiodebug's, patch it): the stdlib loop
/// runs every handle through it, so this loop then does too. Asked once per
/// iteration: CPython gives a class a new version tag whenever one of its
/// attributes changes, so while the tag is the one of the last lookup the
/// answer stands, at the cost of reading one field.
fn replaced_handle_run(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
    // SAFETY: a live type object; the GIL is held.
    let tag_of = |class: &Py<PyAny>| unsafe { (*class.as_ptr().cast::<ffi::PyTypeObject>()).tp_version_tag };
    let known = HANDLE_RUN_SEEN.with(py, |seen| {
        seen.as_ref()
            .filter(|s| s.tag != 0 && s.tag == tag_of(&s.class))
            .map(|s| s.replaced.as_ref().map(|r| r.bind(py).clone()))
    });
    if let Some(answer) = known {
        return Ok(answer);
    }
    let class = py.import("asyncio.events")?.getattr("Handle")?.unbind();
    // The lookup gives the class a valid tag again, if it can have one.
    let run = class.bind(py).getattr(pyo3::intern!(py, "_run"))?;
    let replaced = (!is_asyncio_handle_run(&run)?).then_some(run);
    let seen = HandleRunSeen { tag: tag_of(&class), class, replaced: replaced.as_ref().map(|r| r.clone().unbind()) };
    drop(HANDLE_RUN_SEEN.replace(py, Some(seen)));
    Ok(replaced)
}

/// asyncio's own `Handle._run`, found by its code's file and name, so that
/// a replacement made before ferroloop was imported is still recognised.
fn is_asyncio_handle_run(run: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = run.py();
    let Some(code) = run.getattr_opt(pyo3::intern!(py, "__code__"))? else { return Ok(false) };
    let events_file = py.import("asyncio.events")?.getattr("__file__")?;
    Ok(code.getattr("co_filename")?.eq(events_file)? && code.getattr("co_qualname")?.eq("Handle._run")?)
}

/// `time.monotonic()`, computed the way CPython computes it.
pub fn monotonic() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let ns = ts.tv_sec as i64 * 1_000_000_000 + ts.tv_nsec as i64;
    ns as f64 / 1e9
}

fn clock_resolution() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// `module.name`, read from the module's namespace at each call, so a
/// replaced attribute is seen as asyncio's own `tasks.Task` lookups see it.
fn module_attr<'py>(py: Python<'py>, cell: &PyOnceLock<Py<PyDict>>, module: &str, name: &Bound<'py, pyo3::types::PyString>) -> PyResult<Bound<'py, PyAny>> {
    let namespace = cell.get_or_try_init(py, || py.import(module)?.dict().cast_into::<PyDict>().map(Bound::unbind).map_err(PyErr::from))?;
    namespace
        .bind(py)
        .get_item(name)?
        .ok_or_else(|| pyo3::exceptions::PyAttributeError::new_err(format!("module '{module}' has no attribute '{name}'")))
}

/// How CPython names a callable in its argument errors (`_PyObject_FunctionStr`).
fn function_str(f: &Bound<'_, PyAny>) -> PyResult<String> {
    let py = f.py();
    let qualname = f.getattr(pyo3::intern!(py, "__qualname__"))?;
    match f.getattr(pyo3::intern!(py, "__module__")) {
        Ok(m) if !m.is_none() && m.to_string() != "builtins" => Ok(format!("{m}.{qualname}")),
        _ => Ok(qualname.to_string()),
    }
}

fn thread_ident() -> u64 {
    unsafe { ffi::PyThread_get_thread_ident() as u64 }
}

fn closed_error() -> PyErr {
    PyRuntimeError::new_err("Event loop is closed")
}

/// selectors' `_fileobj_to_fd`: an int, or an object with `fileno()`.
/// `None` for a non-negative number past a C int, which no fd can be: the
/// selector finds no key for it, and epoll refuses to register it.
pub fn fd_arg(obj: &Bound<'_, PyAny>) -> PyResult<Option<RawFd>> {
    let py = obj.py();
    let as_int = if obj.is_instance_of::<PyInt>() {
        obj.clone()
    } else {
        let invalid = || PyValueError::new_err(format!("Invalid file object: {}", obj.repr().map(|r| r.to_string()).unwrap_or_default()));
        let fileno = obj.call_method0("fileno").map_err(|e| {
            if e.is_instance_of::<pyo3::exceptions::PyAttributeError>(py)
                || e.is_instance_of::<PyTypeError>(py)
                || e.is_instance_of::<PyValueError>(py)
            {
                invalid()
            } else {
                e
            }
        })?;
        py.get_type::<PyInt>().call1((fileno,)).map_err(|_| invalid())?
    };
    if as_int.lt(0)? {
        return Err(PyValueError::new_err(format!("Invalid file descriptor: {}", as_int.str()?)));
    }
    Ok(as_int.extract::<RawFd>().ok())
}

/// `fd_arg` for an fd about to be registered: too large is epoll's OverflowError.
pub fn fileobj_to_fd(obj: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    fd_arg(obj)?.ok_or_else(|| PyOverflowError::new_err("Python int too large to convert to C int"))
}

/// What one fd is watched for: asyncio's (reader, writer) selector key data.
#[derive(Default)]
struct FdWatch {
    reader: Option<Py<Handle>>,
    writer: Option<Py<Handle>>,
    /// The object `add_reader` / `add_writer` was given, when not an int:
    /// asyncio's selector key keeps it, so that `remove_reader(sock)` still
    /// finds the registration after `sock` was closed (its fileno is -1).
    fileobj: Option<Py<PyAny>>,
}

impl FdWatch {
    fn interest(&self) -> u8 {
        (if self.reader.is_some() { READABLE } else { 0 }) | (if self.writer.is_some() { WRITABLE } else { 0 })
    }

    fn slot(&mut self, dir: u8) -> &mut Option<Py<Handle>> {
        if dir == READABLE {
            &mut self.reader
        } else {
            &mut self.writer
        }
    }
}

#[pyclass(frozen, subclass, weakref, module = "ferroloop._ferroloop")]
pub struct LoopCore {
    ready: GilCell<VecDeque<Py<Handle>>>,
    timers: GilCell<TimerHeap<Py<Handle>>>,
    poller: GilCell<Option<Poller>>,
    waker: GilCell<Option<Waker>>,
    /// Readiness buffer, lent to the poll while the GIL is released.
    events: GilCell<Events>,
    fds: GilCell<Vec<FdWatch>>,
    /// True while the loop sleeps in the poll with the GIL released; a
    /// thread-safe call only needs to write to the waker then. Set and read
    /// under the GIL, which orders it against the ready queue.
    polling: AtomicBool,
    stopping: GilCell<bool>,
    closed: GilCell<bool>,
    debug: GilCell<bool>,
    slow_callback_duration: GilCell<f64>,
    thread_id: GilCell<Option<u64>>,
    current_handle: GilCell<Option<Py<Handle>>>,
    task_factory: GilCell<Option<Py<PyAny>>>,
    /// Fds with a reader or writer, plus one while signal handlers are set:
    /// with none, a non-blocking poll could report nothing and is skipped.
    watched: GilCell<usize>,
    /// Finished plain handles kept for reuse (`Handle::recycle`). They hold
    /// no reference to the loop, and closing the loop frees them.
    spare: GilCell<Vec<Py<Handle>>>,
    clock_resolution: f64,
    /// True while `time` is not the native clock (overridden by a subclass or
    /// patched on the instance, as tests do to drive time): the scheduler
    /// then asks `self.time()`, as asyncio's does, instead of the clock.
    time_overridden: GilCell<bool>,
    /// What the loop counts while metrics are on; None while off, so the hot
    /// paths test one pointer.
    metrics: GilCell<Option<Box<LoopMetrics>>>,
    /// While metrics are on: callbacks that run this many `tick_clock`
    /// ticks or more are reported with their origin; u64::MAX, none are.
    slow_threshold_ticks: GilCell<u64>,
    /// While metrics are on and a callback runs: when it started (ticks).
    /// What it queues is stamped with this instead of a clock read of its
    /// own (the clock is most of what metrics cost per callback); 0 otherwise.
    callback_started: GilCell<u64>,
    /// Ticks to monotonic seconds, for the timer lag: set each iteration.
    anchor: GilCell<Anchor>,
}

/// At most this many spare handles per loop (about 4 MiB): enough for a
/// burst of callbacks as large as a server with ten thousand connections
/// queues in one iteration.
const SPARE_MAX: usize = 32 * 1024;

impl LoopCore {
    #[inline]
    pub fn debug(&self, py: Python<'_>) -> bool {
        self.debug.get(py)
    }

    /// The loop's idea of now: the monotonic clock, or `self.time()` when
    /// that is overridden.
    fn now(slf: &Bound<'_, Self>) -> PyResult<f64> {
        if slf.get().time_overridden.get(slf.py()) {
            slf.call_method0(pyo3::intern!(slf.py(), "time"))?.extract()
        } else {
            Ok(monotonic())
        }
    }

    /// Handles made now record where they were scheduled.
    #[inline]
    pub fn reports_slow_callbacks(&self, py: Python<'_>) -> bool {
        self.slow_threshold_ticks.get(py) != u64::MAX
    }

    #[inline]
    fn metrics_on(&self, py: Python<'_>) -> bool {
        self.metrics.with(py, |m| m.is_some())
    }

    #[inline]
    fn count(&self, py: Python<'_>, f: impl FnOnce(&mut LoopMetrics)) {
        self.metrics.with(py, |m| {
            if let Some(m) = m {
                f(m)
            }
        })
    }

    /// Bytes a transport of `kind` read and wrote, counted while metrics are on.
    #[inline]
    pub fn count_bytes(&self, py: Python<'_>, kind: TransportKind, read: usize, written: usize) {
        self.count(py, |m| {
            m.add_read(kind, read);
            m.add_written(kind, written);
        })
    }

    #[inline]
    pub fn count_accepted(&self, py: Python<'_>) {
        self.count(py, |m| m.connections_accepted += 1)
    }

    /// Fds with a reader or a writer now.
    fn fds_watched(&self, py: Python<'_>) -> usize {
        self.fds.with(py, |f| f.iter().filter(|w| w.interest() != 0).count())
    }

    /// Appends to the ready queue, noting when for the ready-lag histogram.
    #[inline]
    fn enqueue(&self, py: Python<'_>, h: Py<Handle>) {
        if self.metrics_on(py) {
            let started = self.callback_started.get(py);
            h.get().set_queued_at(py, if started > 0 { started } else { tick_clock::ticks() });
        }
        self.ready.with(py, |r| r.push_back(h));
    }

    pub fn take_spare(&self, py: Python<'_>) -> Option<Py<Handle>> {
        self.spare.with(py, Vec::pop)
    }

    pub fn can_keep_spare(&self, py: Python<'_>) -> bool {
        !self.closed.get(py) && self.spare.with(py, |s| s.len() < SPARE_MAX)
    }

    pub fn keep_spare(&self, py: Python<'_>, h: Py<Handle>) {
        self.spare.with(py, |s| s.push(h));
    }

    /// `create_task(coro, *, name=None, context=None)` before Python 3.14,
    /// called by the vectorcall entry point below.
    fn create_task(slf: &Bound<'_, Self>, coro: Bound<'_, PyAny>, name: Option<Bound<'_, PyAny>>, context: Option<Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed(py)?;
        this.count(py, |m| m.tasks_created += 1);
        if let Some(factory) = this.task_factory.with(py, |f| f.as_ref().map(|f| f.clone_ref(py))) {
            return Ok(slf.call_method1("_create_task_from_factory", (factory, coro, name, context))?.unbind());
        }
        let kwargs = PyDict::new(py);
        // Only the keywords given, so the call costs no more than it must.
        if let Some(name) = name.filter(|n| !n.is_none()) {
            kwargs.set_item(pyo3::intern!(py, "name"), name)?;
        }
        if let Some(context) = context.filter(|c| !c.is_none()) {
            kwargs.set_item(pyo3::intern!(py, "context"), context)?;
        }
        Self::new_task(slf, coro, kwargs)
    }

    /// `create_task(coro, **kwargs)` from Python 3.14 on: every keyword
    /// (`name`, `context`, `eager_start`, or the factory's own) goes to the
    /// task factory or to `Task` unchanged.
    fn create_task_passing_keywords(slf: &Bound<'_, Self>, coro: Bound<'_, PyAny>, kwargs: Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed(py)?;
        this.count(py, |m| m.tasks_created += 1);
        if let Some(factory) = this.task_factory.with(py, |f| f.as_ref().map(|f| f.clone_ref(py))) {
            return Ok(factory.bind(py).call((slf, coro), Some(&kwargs))?.unbind());
        }
        Self::new_task(slf, coro, kwargs)
    }

    /// `tasks.Task(coro, loop=self, **kwargs)`, with `Task` looked up at each
    /// call as asyncio does (tests and tools swap in the pure-Python task).
    fn new_task(slf: &Bound<'_, Self>, coro: Bound<'_, PyAny>, kwargs: Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let task_type = module_attr(py, &TASKS_MODULE, "asyncio.tasks", pyo3::intern!(py, "Task"))?;
        let loop_key = pyo3::intern!(py, "loop");
        if kwargs.contains(loop_key)? {
            return Err(PyTypeError::new_err(format!("{}() got multiple values for keyword argument 'loop'", function_str(&task_type)?)));
        }
        kwargs.set_item(loop_key, slf)?;
        // In debug mode the task's `_source_traceback` ends at the caller's
        // frame: this call has none of its own to drop (asyncio's Python
        // create_task drops its own frame).
        Ok(task_type.call((coro,), Some(&kwargs))?.unbind())
    }

    /// A scheduled timer was cancelled (asyncio's `_timer_handle_cancelled`).
    pub fn timer_cancelled(&self, py: Python<'_>) {
        self.timers.with(py, |t| t.note_cancelled());
        self.count(py, |m| m.timers_cancelled += 1);
    }

    #[inline]
    pub fn check_closed(&self, py: Python<'_>) -> PyResult<()> {
        if self.closed.get(py) {
            Err(closed_error())
        } else {
            Ok(())
        }
    }

    fn debug_helpers(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
        DEBUG_HELPERS
            .get_or_try_init(py, || py.import("ferroloop._debug").map(Bound::unbind))
            .map(|m| m.bind(py))
    }

    /// Debug-mode checks asyncio makes before scheduling a callback.
    fn debug_checks(&self, py: Python<'_>, callback: &Bound<'_, PyAny>, method: &str, thread: bool) -> PyResult<()> {
        if thread {
            if let Some(owner) = self.thread_id.get(py) {
                if owner != thread_ident() {
                    return Err(PyRuntimeError::new_err(
                        "Non-thread-safe operation invoked on an event loop other than the current one",
                    ));
                }
            }
        }
        Self::debug_helpers(py)?.call_method1("check_callback", (callback, method))?;
        Ok(())
    }

    /// `call_soon`, called by the vectorcall entry point below.
    pub(crate) fn call_soon(slf: &Bound<'_, Self>, callback: Bound<'_, PyAny>, args: Bound<'_, PyTuple>, context: Option<Bound<'_, PyAny>>) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed(py)?;
        if this.debug.get(py) {
            this.debug_checks(py, &callback, "call_soon", true)?;
        }
        let h = Handle::new_plain(py, slf.clone().unbind(), callback.unbind(), args.unbind(), context.map(Bound::unbind))?;
        Handle::untrack_queued(&h);
        this.enqueue(py, h.clone_ref(py));
        Ok(h)
    }

    fn schedule_timer(slf: &Bound<'_, Self>, when: f64, when_given: Option<Py<PyAny>>, callback: Bound<'_, PyAny>, args: Bound<'_, PyTuple>, context: Option<Bound<'_, PyAny>>) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let h = Handle::new_timer(py, slf.clone().unbind(), when, when_given, callback.unbind(), args.unbind(), context.map(Bound::unbind))?;
        let this = slf.get();
        // Untracked while the heap holds it, as queued handles are.
        Handle::untrack_queued(&h);
        this.timers.with(py, |t| t.push(when, h.clone_ref(py)));
        h.get().set_scheduled(py, true);
        this.count(py, |m| m.timers_scheduled += 1);
        Ok(h)
    }

    /// `call_at` after its None check, in asyncio's order: the loop, the
    /// debug checks, then the time. asyncio would take a non-number and die
    /// comparing it in the heap later; it is refused here, with a TypeError.
    fn call_at_impl(slf: &Bound<'_, Self>, when: &Bound<'_, PyAny>, callback: Bound<'_, PyAny>, args: Bound<'_, PyTuple>, context: Option<Bound<'_, PyAny>>) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed(py)?;
        if this.debug.get(py) {
            this.debug_checks(py, &callback, "call_at", true)?;
        }
        let when_f: f64 = when.extract()?;
        // TimerHandle.when() returns what was given (an int stays an int).
        let given = (!when.is_exact_instance_of::<PyFloat>()).then(|| when.clone().unbind());
        Self::schedule_timer(slf, when_f, given, callback, args, context)
    }

    fn add_watch(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>, dir: u8, callback: Bound<'_, PyAny>, args: Bound<'_, PyTuple>) -> PyResult<Py<Handle>> {
        let py = slf.py();
        // asyncio checks the loop before the selector looks at the fd.
        slf.get().check_closed(py)?;
        let fileobj = fd;
        let fd = fileobj_to_fd(fileobj)?;
        let handle = Handle::new_plain(py, slf.clone().unbind(), callback.unbind(), args.unbind(), None)?;
        Self::watch(slf, fd, dir, handle.clone_ref(py))?;
        if !fileobj.is_instance_of::<PyInt>() {
            let old = slf.get().fds.with(py, |fds| fds[fd as usize].fileobj.replace(fileobj.clone().unbind()));
            drop(old);
        }
        Ok(handle)
    }

    /// The fd `fileobj` stands for in a removal: `fd_arg`'s, or, once the
    /// object is closed, the fd it was watched under (selectors' exhaustive
    /// search for the object among their keys).
    fn watched_fd(&self, py: Python<'_>, fileobj: &Bound<'_, PyAny>) -> PyResult<Option<RawFd>> {
        fd_arg(fileobj).or_else(|e| {
            let found = self.fds.with(py, |fds| {
                fds.iter().position(|w| w.fileobj.as_ref().is_some_and(|o| o.is(fileobj)))
            });
            match found {
                Some(fd) if e.is_instance_of::<PyValueError>(py) => Ok(Some(fd as RawFd)),
                _ => Err(e),
            }
        })
    }

    /// Makes `handle` the reader (READABLE) or writer (WRITABLE) of `fd`,
    /// cancelling the one it replaces, as asyncio's `_add_reader` does.
    pub fn watch(slf: &Bound<'_, Self>, fd: RawFd, dir: u8, handle: Py<Handle>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed(py)?;
        let old = this.fds.with(py, |fds| -> io::Result<Option<Py<Handle>>> {
            let idx = fd as usize;
            let before = fds.get(idx).map_or(0, FdWatch::interest);
            this.poller.with(py, |p| p.as_mut().expect("open loop has a poller").set_interest(fd, before | dir))?;
            if idx >= fds.len() {
                fds.resize_with(idx + 1, FdWatch::default);
            }
            if before == 0 {
                this.watched.set(py, this.watched.get(py) + 1);
            }
            Ok(fds[idx].slot(dir).replace(handle))
        })
        .map_err(|e| os_error::from_io(py, e))?;
        if let Some(old) = old {
            Handle::cancel(old.bind(py))?;
        }
        Ok(())
    }

    /// The handle watching `fd` in direction `dir`, if any.
    pub fn watcher(&self, py: Python<'_>, fd: RawFd, dir: u8) -> Option<Py<Handle>> {
        self.fds.with(py, |fds| {
            fds.get_mut(fd as usize).and_then(|w| w.slot(dir).as_ref().map(|h| h.clone_ref(py)))
        })
    }

    /// Takes `dir`'s handle off `fd`, returning it (not yet cancelled).
    pub fn take_watch(&self, py: Python<'_>, fd: RawFd, dir: u8) -> Option<Py<Handle>> {
        // The file object is dropped after the cell is let go: its
        // finalizer may run Python code that watches fds.
        let (old, _fileobj) = self.fds.with(py, |fds| {
            let Some(w) = fds.get_mut(fd as usize) else { return (None, None) };
            let before = w.interest();
            let old = w.slot(dir).take();
            let interest = w.interest();
            // Modifying an fd the user already closed fails; it is gone anyway.
            let _ = self.poller.with(py, |p| p.as_mut().map(|p| p.set_interest(fd, interest)));
            if before != 0 && interest == 0 {
                self.watched.set(py, self.watched.get(py) - 1);
            }
            (old, if interest == 0 { w.fileobj.take() } else { None })
        });
        old
    }

    fn remove_watch(&self, py: Python<'_>, fd: &Bound<'_, PyAny>, dir: u8) -> PyResult<bool> {
        if self.closed.get(py) {
            return Ok(false);
        }
        // An fd past a C int is registered nowhere.
        let Some(fd) = self.watched_fd(py, fd)? else { return Ok(false) };
        match self.take_watch(py, fd, dir) {
            Some(h) => {
                Handle::cancel(h.bind(py))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Queues the watchers of one fd the poll reported ready; cancelled ones
    /// are collected for removal, as asyncio's `_process_events` does.
    /// `ready_at` is when the poll returned (ticks), while metrics are on.
    fn dispatch_fd(&self, py: Python<'_>, fd: RawFd, mask: u8, ready_at: Option<u64>, stale: &mut Vec<(RawFd, u8)>) {
        self.fds.with(py, |fds| {
            let Some(w) = fds.get(fd as usize) else { return };
            self.ready.with(py, |ready| {
                for (dir, slot) in [(READABLE, &w.reader), (WRITABLE, &w.writer)] {
                    if mask & dir == 0 {
                        continue;
                    }
                    if let Some(h) = slot {
                        if h.get().is_cancelled(py) {
                            stale.push((fd, dir));
                        } else {
                            if let Some(t) = ready_at {
                                h.get().set_queued_at(py, t);
                            }
                            ready.push_back(h.clone_ref(py));
                        }
                    }
                }
            })
        })
    }

    /// One iteration: poll, queue what became ready and what is due, run
    /// the callbacks that were ready when the iteration began.
    fn run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();

        let mut dropped = Vec::new();
        this.timers.with(py, |t| t.drop_cancelled(|h| h.get().is_cancelled(py), |h| dropped.push(h)));
        for h in dropped {
            h.get().set_scheduled(py, false);
            Handle::release_queued(py, h);
        }

        // A handler tripped with no real signal (PyErr_SetInterrupt,
        // _thread.interrupt_main) would not wake the poll: run it before
        // deciding whether the poll may sleep (it may schedule callbacks).
        py.check_signals()?;
        let busy = this.stopping.get(py) || this.ready.with(py, |r| !r.is_empty());
        let next_timer = if busy { None } else { this.timers.with(py, |t| t.peek_when()) };
        let timeout = if busy {
            Some(Duration::ZERO)
        } else if let Some(when) = next_timer {
            let t = (when - Self::now(slf)?).clamp(0.0, MAXIMUM_SELECT_TIMEOUT);
            Some(Duration::from_secs_f64(if t.is_nan() { 0.0 } else { t }))
        } else {
            None
        };

        let (epfd, waker_fd) = match (
            this.poller.with(py, |p| p.as_ref().map(Poller::raw_fd)),
            this.waker.with(py, |w| w.as_ref().map(Waker::read_fd)),
        ) {
            (Some(p), Some(w)) => (p, w),
            _ => return Err(closed_error()),
        };
        let mut events = this.events.with(py, std::mem::take);
        let metrics_on = this.metrics_on(py);
        let poll_start = if metrics_on { tick_clock::ticks() } else { 0 };
        let polled = if busy && this.watched.get(py) == 0 {
            // Nothing is watched and the poll may not sleep: it could only
            // report the waker, whose thread-safe callbacks are queued already.
            events.clear();
            Ok(())
        } else if timeout == Some(Duration::ZERO) {
            // Cannot block, so releasing the GIL would only cost time.
            poller::wait(epfd, &mut events, timeout)
        } else {
            this.polling.store(true, Ordering::SeqCst);
            let polled = py.detach(|| poller::wait(epfd, &mut events, timeout));
            this.polling.store(false, Ordering::SeqCst);
            polled
        };
        if let Err(e) = polled {
            if e.kind() != io::ErrorKind::Interrupted {
                this.events.with(py, |b| *b = events);
                return Err(os_error::from_io(py, e));
            }
        }
        let ready_at = metrics_on.then(|| {
            let t = tick_clock::ticks();
            this.anchor.set(py, Anchor::new(t, monotonic()));
            this.count(py, |m| {
                m.iterations += 1;
                m.poll_ticks += t.saturating_sub(poll_start);
            });
            t
        });
        // Run Python-level signal handlers now (SIGINT's KeyboardInterrupt),
        // even if no Python code runs this iteration.
        py.check_signals()?;

        let mut stale = Vec::new();
        let mut signals = Vec::new();
        for ev in events.iter() {
            let (fd, mask) = poller::decode(ev);
            if fd == waker_fd {
                this.waker.with(py, |w| w.as_ref().map(|w| w.drain(&mut signals)));
            } else {
                this.dispatch_fd(py, fd, mask, ready_at, &mut stale);
            }
        }
        this.events.with(py, |b| *b = events);
        for (fd, dir) in stale {
            drop(this.take_watch(py, fd, dir));
        }
        for sig in signals.into_iter().filter(|&s| s != 0) {
            slf.call_method1("_handle_signal", (sig,))?;
        }

        if !this.timers.with(py, |t| t.is_empty()) {
            let end = Self::now(slf)? + this.clock_resolution;
            this.timers.with(py, |t| {
                this.ready.with(py, |r| {
                    while let Some(h) = t.pop_due(end) {
                        h.get().set_scheduled(py, false);
                        r.push_back(h);
                    }
                })
            });
        }

        let run_patch = replaced_handle_run(py)?;
        let instrumented = metrics_on || run_patch.is_some() || this.debug.get(py);
        // Instrumented, each callback's end is the next one's start: one
        // clock read per callback.
        let mut clock = if instrumented { tick_clock::ticks() } else { 0 };
        let ntodo = this.ready.with(py, |r| r.len());
        for _ in 0..ntodo {
            let Some(h) = this.ready.with(py, |r| r.pop_front()) else { break };
            let hb = h.bind(py);
            if hb.get().is_cancelled(py) {
                Handle::release_queued(py, h);
                continue;
            }
            let outcome = if instrumented {
                let outcome = Self::run_instrumented(slf, hb, run_patch.as_ref(), &mut clock);
                this.callback_started.set(py, 0);
                outcome
            } else {
                Handle::run(hb)
            };
            Handle::release_queued(py, h);
            if let Err(RunError::Fatal(e)) = outcome {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Runs one handle with what debug mode, metrics or a replaced
    /// `Handle._run` ask for around it: timing, lag, slow-callback reports.
    /// `clock` is when the handle starts (the previous one's end), and
    /// becomes when it ended, in ticks. A failure to report a slow callback
    /// leaves the loop, as the callback's own SystemExit would.
    #[inline]
    fn run_instrumented(slf: &Bound<'_, Self>, hb: &Bound<'_, Handle>, run_patch: Option<&Bound<'_, PyAny>>, clock: &mut u64) -> Result<(), RunError> {
        let py = slf.py();
        let this = slf.get();
        let debug = this.debug.get(py);
        if debug {
            drop(this.current_handle.replace(py, Some(hb.clone().unbind())));
        }
        let t0 = *clock;
        this.callback_started.set(py, t0);
        let outcome = match run_patch {
            Some(run) => Handle::run_through(hb, run),
            None => Handle::run(hb),
        };
        *clock = tick_clock::ticks();
        let dt = clock.saturating_sub(t0);
        if debug {
            drop(this.current_handle.replace(py, None));
            let secs = tick_clock::to_secs(dt);
            if secs >= this.slow_callback_duration.get(py) {
                Self::debug_helpers(py)
                    .and_then(|d| d.call_method1("log_slow_callback", (hb, secs)))
                    .map_err(RunError::Fatal)?;
            }
        }
        let mut slow = false;
        this.metrics.with(py, |m| {
            let Some(m) = m else { return };
            let h = hb.get();
            match h.when_value() {
                Some(when) => {
                    m.timers_fired += 1;
                    // A patched clock's deadlines are not on this clock.
                    if !this.time_overridden.get(py) {
                        m.timer_lag.record_secs(this.anchor.get(py).secs_at(t0) - when);
                    }
                }
                None => {
                    let queued = h.queued_at(py);
                    if queued > 0 {
                        m.ready_lag.record_ticks(t0.saturating_sub(queued));
                    }
                }
            }
            m.callbacks += 1;
            m.busy_ticks += dt;
            slow = dt >= this.slow_threshold_ticks.get(py);
            if slow {
                m.slow_callbacks += 1;
            }
        });
        if slow {
            Self::report_slow(slf, hb, tick_clock::to_secs(dt)).map_err(RunError::Fatal)?;
        }
        outcome
    }

    #[cold]
    fn report_slow(slf: &Bound<'_, Self>, hb: &Bound<'_, Handle>, secs: f64) -> PyResult<()> {
        let py = slf.py();
        let helpers = METRICS_HELPERS.get_or_try_init(py, || py.import("ferroloop._metrics").map(Bound::unbind))?;
        helpers.bind(py).call_method1("_report_slow_callback", (slf, hb, secs, hb.get().origin(py)?))?;
        Ok(())
    }
}

#[pymethods]
impl LoopCore {
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // SAFETY: called by the garbage collector only.
        unsafe {
            for h in self.ready.peek_for_gc() {
                visit.call(h)?;
            }
            for h in self.timers.peek_for_gc().iter() {
                visit.call(h)?;
            }
            for w in self.fds.peek_for_gc() {
                visit.call(&w.reader)?;
                visit.call(&w.writer)?;
                visit.call(&w.fileobj)?;
            }
            visit.call(self.task_factory.peek_for_gc())?;
            visit.call(self.current_handle.peek_for_gc())?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let ready = self.ready.with(py, std::mem::take);
            let timers = self.timers.with(py, |t| t.drain());
            let fds = self.fds.with(py, std::mem::take);
            let rest = (self.task_factory.take(py), self.current_handle.take(py));
            ready.into_iter().chain(timers).for_each(|h| Handle::release_queued(py, h));
            drop((fds, rest));
        })
    }

    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let (poller, waker) = Python::attach(|py| -> PyResult<_> {
            let os = |e| os_error::from_io(py, e);
            let mut poller = Poller::new().map_err(os)?;
            let waker = Waker::new().map_err(os)?;
            poller.set_interest(waker.read_fd(), READABLE).map_err(os)?;
            Ok((poller, waker))
        })?;
        Ok(LoopCore {
            ready: GilCell::new(VecDeque::new()),
            timers: GilCell::new(TimerHeap::new()),
            poller: GilCell::new(Some(poller)),
            waker: GilCell::new(Some(waker)),
            events: GilCell::new(Events::new()),
            fds: GilCell::new(Vec::new()),
            polling: AtomicBool::new(false),
            stopping: GilCell::new(false),
            closed: GilCell::new(false),
            debug: GilCell::new(false),
            slow_callback_duration: GilCell::new(0.1),
            thread_id: GilCell::new(None),
            current_handle: GilCell::new(None),
            task_factory: GilCell::new(None),
            watched: GilCell::new(0),
            spare: GilCell::new(Vec::new()),
            clock_resolution: clock_resolution(),
            time_overridden: GilCell::new(false),
            metrics: GilCell::new(None),
            slow_threshold_ticks: GilCell::new(u64::MAX),
            callback_started: GilCell::new(0),
            anchor: GilCell::new(Anchor::default()),
        })
    }

    fn time(&self) -> f64 {
        monotonic()
    }

    #[pyo3(signature = (callback, *args, context=None))]
    fn call_soon_threadsafe(slf: &Bound<'_, Self>, callback: Bound<'_, PyAny>, args: Bound<'_, PyTuple>, context: Option<Bound<'_, PyAny>>) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed(py)?;
        if this.debug.get(py) {
            this.debug_checks(py, &callback, "call_soon_threadsafe", false)?;
        }
        let h = Handle::new_thread_safe(py, slf.clone().unbind(), callback.unbind(), args.unbind(), context.map(Bound::unbind))?;
        Handle::untrack_queued(&h);
        this.enqueue(py, h.clone_ref(py));
        if this.polling.load(Ordering::SeqCst) {
            this.waker.with(py, |w| w.as_ref().map(Waker::wake));
        }
        Ok(h)
    }

    #[pyo3(signature = (delay, callback, *args, context=None))]
    fn call_later(slf: &Bound<'_, Self>, delay: Bound<'_, PyAny>, callback: Bound<'_, PyAny>, args: Bound<'_, PyTuple>, context: Option<Bound<'_, PyAny>>) -> PyResult<Py<Handle>> {
        let py = slf.py();
        if delay.is_none() {
            return Err(PyTypeError::new_err("delay must not be None"));
        }
        // asyncio's `self.time() + delay`: a float delay adds here, anything
        // else through Python's `+`, with its errors; a patched `time` is
        // called, and its value's own `+` decides.
        let when = if slf.get().time_overridden.get(py) {
            slf.call_method0(pyo3::intern!(py, "time"))?.add(&delay)?
        } else {
            let now = monotonic();
            match delay.cast::<PyFloat>() {
                Ok(f) => PyFloat::new(py, now + f.value()).into_any(),
                Err(_) => PyFloat::new(py, now).add(&delay)?,
            }
        };
        Self::call_at_impl(slf, &when, callback, args, context)
    }

    #[pyo3(signature = (when, callback, *args, context=None))]
    fn call_at(slf: &Bound<'_, Self>, when: Bound<'_, PyAny>, callback: Bound<'_, PyAny>, args: Bound<'_, PyTuple>, context: Option<Bound<'_, PyAny>>) -> PyResult<Py<Handle>> {
        if when.is_none() {
            return Err(PyTypeError::new_err("when cannot be None"));
        }
        Self::call_at_impl(slf, &when, callback, args, context)
    }

    pub fn create_future(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let fut = module_attr(py, &FUTURES_MODULE, "asyncio.futures", pyo3::intern!(py, "Future"))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item(pyo3::intern!(py, "loop"), slf)?;
        Ok(fut.call((), Some(&kwargs))?.unbind())
    }


    fn set_task_factory(&self, py: Python<'_>, factory: Bound<'_, PyAny>) -> PyResult<()> {
        if !factory.is_none() && !factory.is_callable() {
            return Err(PyTypeError::new_err("task factory must be a callable or None"));
        }
        self.task_factory.replace(py, Some(factory.unbind()).filter(|f| !f.is_none(py)));
        Ok(())
    }

    fn get_task_factory(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.task_factory.with(py, |f| f.as_ref().map(|f| f.clone_ref(py)))
    }

    #[getter]
    fn _task_factory(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.get_task_factory(py)
    }

    fn stop(&self, py: Python<'_>) {
        self.stopping.set(py, true);
    }

    fn is_running(&self, py: Python<'_>) -> bool {
        self.thread_id.get(py).is_some()
    }

    fn is_closed(&self, py: Python<'_>) -> bool {
        self.closed.get(py)
    }

    fn get_debug(&self, py: Python<'_>) -> bool {
        self.debug.get(py)
    }

    /// asyncio takes any object here and uses its truth.
    fn set_debug(&self, py: Python<'_>, enabled: &Bound<'_, PyAny>) -> PyResult<()> {
        self.debug.set(py, enabled.is_truthy()?);
        Ok(())
    }

    /// Called by the Python side when `time` stops or starts being the
    /// native clock (patched on the instance, or overridden by a subclass).
    fn _set_time_overridden(&self, py: Python<'_>, overridden: bool) {
        self.time_overridden.set(py, overridden)
    }

    #[getter(_debug)]
    fn debug_attr(&self, py: Python<'_>) -> bool {
        self.debug.get(py)
    }

    #[setter(_debug)]
    fn set_debug_attr(&self, py: Python<'_>, enabled: bool) {
        self.debug.set(py, enabled)
    }

    #[getter]
    fn get_slow_callback_duration(&self, py: Python<'_>) -> f64 {
        self.slow_callback_duration.get(py)
    }

    #[setter]
    fn set_slow_callback_duration(&self, py: Python<'_>, seconds: f64) {
        self.slow_callback_duration.set(py, seconds)
    }

    #[getter]
    fn _thread_id(&self, py: Python<'_>) -> Option<u64> {
        self.thread_id.get(py)
    }

    #[getter]
    fn _stopping(&self, py: Python<'_>) -> bool {
        self.stopping.get(py)
    }

    #[getter]
    fn _current_handle(&self, py: Python<'_>) -> Option<Py<Handle>> {
        self.current_handle.with(py, |h| h.as_ref().map(|h| h.clone_ref(py)))
    }

    #[getter]
    fn _clock_resolution(&self) -> f64 {
        self.clock_resolution
    }

    /// Runs iterations until `stop()`; the Python `run_forever` wraps this
    /// with the running-loop and async-generator bookkeeping.
    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.thread_id.set(py, Some(thread_ident()));
        let result = loop {
            if let Err(e) = Self::run_once(slf) {
                break Err(e);
            }
            if this.stopping.get(py) {
                break Ok(());
            }
        };
        this.stopping.set(py, false);
        this.thread_id.set(py, None);
        result
    }

    /// Releases the poll, the waker and every queued callback.
    fn _close_core(&self, py: Python<'_>) {
        self.closed.set(py, true);
        let ready = self.ready.with(py, std::mem::take);
        let timers = self.timers.with(py, |t| t.drain());
        for t in &timers {
            t.get().set_scheduled(py, false);
        }
        let fds = self.fds.with(py, std::mem::take);
        let poller = self.poller.take(py);
        let waker = self.waker.take(py);
        ready.into_iter().chain(timers).for_each(|h| Handle::release_queued(py, h));
        let spare = self.spare.with(py, std::mem::take);
        drop((fds, poller, waker, spare));
    }

    /// A handle not scheduled anywhere yet (signal handlers keep one each).
    fn _make_handle(slf: &Bound<'_, Self>, callback: Bound<'_, PyAny>, args: Bound<'_, PyTuple>) -> PyResult<Py<Handle>> {
        Handle::new_plain(slf.py(), slf.clone().unbind(), callback.unbind(), args.unbind(), None)
    }

    /// Queues an existing handle to run in the next iteration.
    fn _schedule_handle(&self, py: Python<'_>, handle: Py<Handle>) -> PyResult<()> {
        self.check_closed(py)?;
        self.enqueue(py, handle);
        Ok(())
    }

    /// Signal handlers were installed (true) or all removed (false): the
    /// self-pipe must then be polled every iteration.
    fn _watch_signals(&self, py: Python<'_>, on: bool) {
        let w = self.watched.get(py);
        self.watched.set(py, if on { w + 1 } else { w.saturating_sub(1) });
    }

    /// The write end of the self-pipe, for `signal.set_wakeup_fd`.
    fn _waker_fd(&self, py: Python<'_>) -> PyResult<RawFd> {
        self.waker.with(py, |w| w.as_ref().map(Waker::write_fd)).ok_or_else(closed_error)
    }

    #[pyo3(signature = (fd, callback, *args))]
    fn _add_reader(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>, callback: Bound<'_, PyAny>, args: Bound<'_, PyTuple>) -> PyResult<Py<Handle>> {
        Self::add_watch(slf, fd, READABLE, callback, args)
    }

    #[pyo3(signature = (fd, callback, *args))]
    fn _add_writer(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>, callback: Bound<'_, PyAny>, args: Bound<'_, PyTuple>) -> PyResult<Py<Handle>> {
        Self::add_watch(slf, fd, WRITABLE, callback, args)
    }

    fn _remove_reader(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.remove_watch(py, fd, READABLE)
    }

    fn _remove_writer(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.remove_watch(py, fd, WRITABLE)
    }

    /// The (reader, writer) handles watching `fd`, for introspection.
    fn _fd_watchers(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<(Option<Py<Handle>>, Option<Py<Handle>>)> {
        let Some(fd) = self.watched_fd(py, fd)? else { return Ok((None, None)) };
        let fd = fd as usize;
        Ok(self.fds.with(py, |fds| {
            fds.get(fd).map_or((None, None), |w| {
                (w.reader.as_ref().map(|h| h.clone_ref(py)), w.writer.as_ref().map(|h| h.clone_ref(py)))
            })
        }))
    }

    /// Starts counting (counts kept if already on); `slow_callback_duration`
    /// None stops slow-callback reports.
    fn _enable_metrics(&self, py: Python<'_>, slow_callback_duration: Option<f64>) {
        if !self.metrics_on(py) {
            drop(self.metrics.replace(py, Some(Box::default())));
        }
        // The clock's one-time calibration (up to a millisecond) now, not
        // inside the first callback timed.
        tick_clock::ns_per_tick();
        self.slow_threshold_ticks.set(py, slow_callback_duration.map_or(u64::MAX, tick_clock::from_secs));
    }

    /// Stops counting and forgets the counts.
    fn _disable_metrics(&self, py: Python<'_>) {
        drop(self.metrics.take(py));
        self.slow_threshold_ticks.set(py, u64::MAX);
    }

    /// The counts so far as a dict (None while metrics are off); the
    /// histograms as (count, mean, p50, p90, p99, max) in seconds. Still
    /// answers once the loop is closed, for a report at exit.
    fn _metrics_snapshot<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(m) = self.metrics.with(py, |m| m.as_deref().cloned()) else { return Ok(None) };
        let d = PyDict::new(py);
        d.set_item("iterations", m.iterations)?;
        d.set_item("callbacks", m.callbacks)?;
        d.set_item("busy_time", tick_clock::to_secs(m.busy_ticks))?;
        d.set_item("poll_time", tick_clock::to_secs(m.poll_ticks))?;
        d.set_item("timers_scheduled", m.timers_scheduled)?;
        d.set_item("timers_cancelled", m.timers_cancelled)?;
        d.set_item("timers_fired", m.timers_fired)?;
        d.set_item("connections_accepted", m.connections_accepted)?;
        d.set_item("tasks_created", m.tasks_created)?;
        d.set_item("slow_callbacks", m.slow_callbacks)?;
        d.set_item("fds_watched", self.fds_watched(py))?;
        let (read, written) = (PyDict::new(py), PyDict::new(py));
        for (name, (r, w)) in TRANSPORT_KINDS.iter().zip(m.bytes) {
            read.set_item(name, r)?;
            written.set_item(name, w)?;
        }
        d.set_item("bytes_read", read)?;
        d.set_item("bytes_written", written)?;
        let secs = tick_clock::to_secs;
        for (key, h) in [("timer_lag", &m.timer_lag), ("ready_lag", &m.ready_lag)] {
            let q = |q| secs(h.quantile(q));
            d.set_item(key, (h.count(), secs(h.mean()), q(0.5), q(0.9), q(0.99), secs(h.max())))?;
        }
        Ok(Some(d))
    }

    /// Counts for introspection: (ready callbacks, timers in the heap, fds watched).
    fn _stats(&self, py: Python<'_>) -> (usize, usize, usize) {
        (
            self.ready.with(py, |r| r.len()),
            self.timers.with(py, |t| t.len()),
            self.fds_watched(py),
        )
    }
}

/// `create_task(coro, *, name=None, context=None)`, before Python 3.14.
pub struct CreateTask;

impl FastcallMethod for CreateTask {
    type Class = LoopCore;
    type Output = PyAny;
    const NAME: &'static CStr = c"create_task";
    const DOC: &'static CStr = c"create_task($self, coro, *, name=None, context=None)\n--\n\nSchedule a coroutine object.\n\nReturn a task object.";

    unsafe fn call(py: Python<'_>, slf: Bound<'_, LoopCore>, args: FastcallArgs<'_>) -> PyResult<Py<PyAny>> {
        let [coro, name, context] = args.bind(py, "create_task", ["coro", "name", "context"], 1)?;
        let coro = coro.ok_or_else(|| fastcall::missing("create_task", "coro"))?;
        LoopCore::create_task(&slf, coro, name, context)
    }
}

/// `create_task(coro, **kwargs)`, from Python 3.14 on.
pub struct CreateTaskPassingKeywords;

impl FastcallMethod for CreateTaskPassingKeywords {
    type Class = LoopCore;
    type Output = PyAny;
    const NAME: &'static CStr = c"create_task";
    const DOC: &'static CStr = c"create_task($self, coro, **kwargs)\n--\n\nSchedule or begin executing a coroutine object.\n\nReturn a task object.";

    unsafe fn call(py: Python<'_>, slf: Bound<'_, LoopCore>, args: FastcallArgs<'_>) -> PyResult<Py<PyAny>> {
        let kwargs = args.keywords_dict(py)?;
        let key = pyo3::intern!(py, "coro");
        let coro = match args.positional {
            [_] if kwargs.contains(key)? => {
                return Err(PyTypeError::new_err("create_task() got multiple values for argument 'coro'"));
            }
            // SAFETY: a live, borrowed argument of this call.
            [coro] => unsafe { Bound::from_borrowed_ptr(py, *coro) },
            [] => {
                let coro = kwargs.get_item(key)?.ok_or_else(|| fastcall::missing("create_task", "coro"))?;
                kwargs.del_item(key)?;
                coro
            }
            more => {
                return Err(PyTypeError::new_err(format!("create_task() takes 2 positional arguments but {} were given", more.len() + 1)));
            }
        };
        LoopCore::create_task_passing_keywords(&slf, coro, kwargs)
    }
}

/// `call_soon(callback, *args, context=None)`.
pub struct CallSoon;

impl FastcallMethod for CallSoon {
    type Class = LoopCore;
    type Output = Handle;
    const NAME: &'static CStr = c"call_soon";
    const DOC: &'static CStr = c"call_soon($self, callback, *args, context=None)\n--\n\nArrange for callback to be called soon.";

    unsafe fn call(py: Python<'_>, slf: Bound<'_, LoopCore>, args: FastcallArgs<'_>) -> PyResult<Py<Handle>> {
        let Some((&callback, rest)) = args.positional.split_first() else {
            return Err(fastcall::missing("call_soon", "callback"));
        };
        let kwnames = args.kwnames;
        let mut context = None;
        // The keyword names tuple is a constant of its caller (asyncio's C
        // tasks and futures pass one tuple every time): remember the last
        // one that named only `context` and skip comparing its text again.
        if !kwnames.is_null() && CONTEXT_KWNAMES.with(py, |k| k.as_ref().is_some_and(|k| k.as_ptr() == kwnames)) {
            context = Some(unsafe { Bound::from_borrowed_ptr(py, args.keywords[0]) });
        } else if !kwnames.is_null() {
            for (i, &value) in args.keywords.iter().enumerate() {
                let name = unsafe { ffi::PyTuple_GET_ITEM(kwnames, i as ffi::Py_ssize_t) };
                if unsafe { ffi::PyUnicode_CompareWithASCIIString(name, c"context".as_ptr()) } != 0 {
                    let name = unsafe { Bound::from_borrowed_ptr(py, name) };
                    return Err(PyTypeError::new_err(format!("call_soon() got an unexpected keyword argument '{}'", name)));
                }
                context = Some(unsafe { Bound::from_borrowed_ptr(py, value) });
            }
            if args.keywords.len() == 1 {
                // Held, so its address cannot be reused by another tuple.
                let names = unsafe { Bound::from_borrowed_ptr(py, kwnames).cast_into_unchecked::<PyTuple>() };
                drop(CONTEXT_KWNAMES.replace(py, Some(names.unbind())));
            }
        }
        let callback = unsafe { Bound::from_borrowed_ptr(py, callback) };
        // The positional arguments after the callback, as the handle's tuple.
        let tuple = unsafe {
            let t = ffi::PyTuple_New(rest.len() as ffi::Py_ssize_t);
            if t.is_null() {
                return Err(PyErr::fetch(py));
            }
            for (i, &arg) in rest.iter().enumerate() {
                ffi::Py_INCREF(arg);
                ffi::PyTuple_SET_ITEM(t, i as ffi::Py_ssize_t, arg);
            }
            Bound::from_owned_ptr(py, t).cast_into_unchecked::<PyTuple>()
        };
        LoopCore::call_soon(&slf, callback, tuple, context)
    }
}

static CONTEXT_KWNAMES: GilCell<Option<Py<PyTuple>>> = GilCell::new(None);
