//! `Handle` and `TimerHandle`: a callback with its arguments and context.
//!
//! Both are one Rust struct (a timer handle just has a deadline), so the ready
//! queue and the timer heap hold the same type; `TimerHandle` is a subclass
//! that adds the timer-only Python API.

use crate::loop_core::event_loop::LoopCore;
use crate::loop_core::gil_cell::GilCell;
use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::sync::PyOnceLock;
use pyo3::pyclass::boolean_struct::True;
use pyo3::{PyClass, PyClassInitializer, PyTraverseError, PyVisit};

static ASYNCIO_HANDLE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static ASYNCIO_TIMER_HANDLE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
/// asyncio's `_ThreadSafeHandle` (Python 3.14 on), or None before it existed.
static ASYNCIO_THREAD_SAFE_HANDLE: PyOnceLock<Option<Py<PyAny>>> = PyOnceLock::new();
static RLOCK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn thread_safe_handle_class(py: Python<'_>) -> PyResult<Option<&Py<PyAny>>> {
    let class = ASYNCIO_THREAD_SAFE_HANDLE.get_or_try_init(py, || -> PyResult<_> {
        let events = py.import("asyncio.events")?;
        Ok(events.getattr_opt("_ThreadSafeHandle")?.map(Bound::unbind))
    })?;
    Ok(class.as_ref())
}

/// asyncio's own rendering of `callback(args)` for reprs and error messages.
/// From Python 3.13 on it shows the arguments only in debug mode.
fn format_callback_source<'py>(
    py: Python<'py>,
    cb: Py<PyAny>,
    args: impl IntoPyObject<'py>,
    debug: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let fmt = py.import("asyncio.format_helpers")?.getattr("_format_callback_source")?;
    if py.version_info() >= (3, 13) {
        let kwargs = PyDict::new(py);
        kwargs.set_item("debug", debug)?;
        fmt.call((cb, args), Some(&kwargs))
    } else {
        fmt.call1((cb, args))
    }
}

#[pyclass(frozen, subclass, weakref, module = "ferroloop")]
pub struct Handle {
    callback: GilCell<Option<Py<PyAny>>>,
    args: GilCell<Option<Py<PyTuple>>>,
    /// `None` only for the loop's own native callbacks that run no user
    /// code (pending `sock_*` operations only resolve futures).
    context: GilCell<Option<Py<PyAny>>>,
    /// `None` only while the handle waits in the spare pool.
    loop_: GilCell<Option<Py<LoopCore>>>,
    cancelled: GilCell<bool>,
    /// Kept on cancel in debug mode, so slow-callback warnings still name it.
    repr: GilCell<Option<Py<PyAny>>>,
    source_traceback: GilCell<Option<Py<PyAny>>>,
    /// Deadline; `Some` exactly for timer handles.
    when: Option<f64>,
    /// A timer handle that is in the loop's timer heap.
    scheduled: GilCell<bool>,
    /// The context is our own copy of the caller's, seen by nothing else.
    copied_context: GilCell<bool>,
    /// The arguments tuple was taken out of the GC's sight while queued.
    untracked_args: GilCell<bool>,
    /// For the loop's own native callbacks: runs the callback object
    /// straight from Rust, without Python's call protocol.
    native: Option<NativeFire>,
    /// A `threading.RLock` for handles of `call_soon_threadsafe` where asyncio
    /// has `_ThreadSafeHandle` (3.14 on): held while the callback runs, so a
    /// `cancel()` or `cancelled()` from another thread waits for its end.
    lock: GilCell<Option<Py<PyAny>>>,
    /// While the loop's metrics are on: when the handle joined the ready
    /// queue (for the ready-lag histogram), and the code object and
    /// instruction offset of the Python frame that scheduled it (for
    /// slow-callback reports), read from the frame at no more cost than two
    /// pointers and a reference, unlike debug mode's whole traceback.
    queued_at: GilCell<u64>,
    origin: GilCell<Option<(Py<PyAny>, i32)>>,
}

type NativeFire = fn(&Bound<'_, PyAny>) -> PyResult<()>;

/// Releases a reference with the GIL held (as everywhere in this file),
/// skipping the GIL check PyO3 makes for every owned reference it drops.
fn decref<T>(p: Option<Py<T>>) {
    if let Some(p) = p {
        unsafe { ffi::Py_DECREF(p.into_ptr()) }
    }
}

/// A native callback object (a transport's reader or writer, a pending
/// `sock_*` operation) that a handle runs without a Python call.
pub trait NativeCallback: PyClass<Frozen = True> + Sync {
    fn fire(&self, py: Python<'_>) -> PyResult<()>;
}

fn fire_native<T: NativeCallback>(cb: &Bound<'_, PyAny>) -> PyResult<()> {
    cb.cast::<T>()?.get().fire(cb.py())
}

/// SystemExit and KeyboardInterrupt leave the loop; every other exception
/// from a callback is reported and the loop goes on, as in asyncio.
pub fn is_fatal(py: Python<'_>, e: &PyErr) -> bool {
    e.is_instance_of::<PySystemExit>(py) || e.is_instance_of::<PyKeyboardInterrupt>(py)
}

/// What running a handle's callback produced that the loop must act on.
pub enum RunError {
    /// Leaves `run_forever`: SystemExit / KeyboardInterrupt, or whatever a
    /// replaced `asyncio.Handle._run` raised.
    Fatal(PyErr),
}

/// What a new handle is made of: it becomes a fresh object or refills a
/// spare one (`Handle::recycle`).
struct Parts {
    loop_: Py<LoopCore>,
    callback: Py<PyAny>,
    args: Py<PyTuple>,
    /// `None` for the loop's own native callbacks, unless they run
    /// protocol code (`new_native_in_context`).
    context: Option<Py<PyAny>>,
    copied_context: bool,
    source_traceback: Option<Py<PyAny>>,
    origin: Option<(Py<PyAny>, i32)>,
}

/// The innermost Python frame's code object and instruction offset, if a
/// Python frame is running.
fn scheduling_frame(py: Python<'_>) -> Option<(Py<PyAny>, i32)> {
    // SAFETY: GIL held; the frame is borrowed and outlives these calls.
    unsafe {
        let frame = ffi::PyEval_GetFrame();
        if frame.is_null() {
            return None;
        }
        let code = ffi::PyFrame_GetCode(frame);
        let lasti = ffi::PyFrame_GetLasti(frame);
        Some((Bound::from_owned_ptr(py, code.cast()).unbind(), lasti))
    }
}

impl Parts {
    /// `context` None (or Python's None) means a copy of the current one;
    /// a native callback gets the one it is given, if any.
    fn new(
        py: Python<'_>,
        loop_: Py<LoopCore>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Option<Py<PyAny>>,
        native: bool,
    ) -> PyResult<Parts> {
        let (context, copied_context) = match context {
            c if native => (c, false),
            Some(c) if !c.is_none(py) => (Some(c), false),
            // SAFETY: returns a new reference or NULL with an exception set.
            _ => (Some(unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent())?.unbind() }), true),
        };
        let source_traceback = if loop_.get().debug(py) {
            Some(py.import("ferroloop._debug")?.call_method0("extract_stack")?.unbind())
        } else {
            None
        };
        let origin = if !native && loop_.get().reports_slow_callbacks(py) { scheduling_frame(py) } else { None };
        Ok(Parts { loop_, callback, args, context, copied_context, source_traceback, origin })
    }

    fn into_handle(self, when: Option<f64>, native: Option<NativeFire>) -> Handle {
        Handle {
            callback: GilCell::new(Some(self.callback)),
            args: GilCell::new(Some(self.args)),
            context: GilCell::new(self.context),
            loop_: GilCell::new(Some(self.loop_)),
            cancelled: GilCell::new(false),
            repr: GilCell::new(None),
            source_traceback: GilCell::new(self.source_traceback),
            when,
            scheduled: GilCell::new(false),
            copied_context: GilCell::new(self.copied_context),
            untracked_args: GilCell::new(false),
            native,
            lock: GilCell::new(None),
            queued_at: GilCell::new(0),
            origin: GilCell::new(self.origin),
        }
    }
}

impl Handle {
    pub fn new_plain(
        py: Python<'_>,
        loop_: Py<LoopCore>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let spare = loop_.get().take_spare(py);
        let parts = Parts::new(py, loop_, callback, args, context, false)?;
        let Some(h) = spare else {
            return Py::new(py, parts.into_handle(None, None));
        };
        h.get().refill(py, parts);
        // SAFETY: a spare is untracked, and new handles are tracked.
        unsafe { ffi::PyObject_GC_Track(h.as_ptr().cast()) };
        Ok(h)
    }

    /// The handle `call_soon_threadsafe` returns: with a lock where asyncio's
    /// `_ThreadSafeHandle` has one.
    pub fn new_thread_safe(
        py: Python<'_>,
        loop_: Py<LoopCore>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let h = Self::new_plain(py, loop_, callback, args, context)?;
        if thread_safe_handle_class(py)?.is_some() {
            let lock = RLOCK.import(py, "threading", "RLock")?.call0()?;
            h.get().lock.replace(py, Some(lock.unbind()));
        }
        Ok(h)
    }

    /// `cancel()`, under the lock if the handle has one.
    fn cancel_now(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.cancelled.get(py) {
            return Ok(());
        }
        if this.when.is_some() && this.scheduled.get(py) {
            this.owner(py).get().timer_cancelled(py);
        }
        this.cancelled.set(py, true);
        if this.owner(py).get().debug(py) {
            let r = slf.repr()?.into_any().unbind();
            this.repr.replace(py, Some(r));
        }
        // Release the callback's references now, as asyncio does.
        let cb = this.callback.take(py);
        let args = this.args.take(py);
        drop((cb, args));
        Ok(())
    }

    /// Runs `f` holding the handle's lock, if it has one. Waiting for the
    /// lock releases the GIL (it is a Python lock), so the thread holding it
    /// can finish.
    fn locked<T>(&self, py: Python<'_>, f: impl FnOnce() -> T) -> PyResult<T> {
        let Some(lock) = self.lock.with(py, |l| l.as_ref().map(|l| l.clone_ref(py))) else {
            return Ok(f());
        };
        let lock = lock.bind(py);
        lock.call_method0(pyo3::intern!(py, "acquire"))?;
        let out = f();
        lock.call_method0(pyo3::intern!(py, "release"))?;
        Ok(out)
    }

    /// The loop this handle belongs to.
    fn owner(&self, _py: Python<'_>) -> &Py<LoopCore> {
        // SAFETY: GIL held; the cell is only written while the handle sits
        // in the spare pool, where nothing else can reach it.
        unsafe { (*self.loop_.raw()).as_ref() }.expect("a handle in use has its loop")
    }

    /// Fills a spare handle (every reference `None`) with new contents.
    fn refill(&self, py: Python<'_>, parts: Parts) {
        self.callback.replace(py, Some(parts.callback));
        self.args.replace(py, Some(parts.args));
        self.context.replace(py, parts.context);
        self.loop_.replace(py, Some(parts.loop_));
        self.source_traceback.replace(py, parts.source_traceback);
        self.copied_context.set(py, parts.copied_context);
        self.origin.replace(py, parts.origin);
    }

    /// Keeps a finished plain handle that nothing else refers to for the
    /// next `call_soon`, instead of freeing it: allocating, initialising and
    /// freeing the object is most of what a callback costs the loop.
    /// Returns the handle back when it cannot be kept.
    fn recycle(py: Python<'_>, h: Py<Handle>) -> Option<Py<Handle>> {
        let p = h.as_ptr();
        let this = h.get();
        // SAFETY: GIL held; `p` is a live Handle (or subclass) instance.
        let keep = unsafe {
            ffi::Py_REFCNT(p) == 1
                && ffi::Py_TYPE(p) == <Handle as pyo3::PyTypeInfo>::type_object_raw(py)
                && this.when.is_none()
                && this.native.is_none()
                && (*p.cast::<u8>().offset((*ffi::Py_TYPE(p)).tp_weaklistoffset).cast::<*mut ffi::PyObject>()).is_null()
        };
        if !keep || !this.owner(py).get().can_keep_spare(py) {
            return Some(h);
        }
        let old = (
            this.callback.take(py),
            this.args.take(py),
            this.context.take(py),
            this.repr.take(py),
            this.source_traceback.take(py),
            this.lock.take(py),
            this.origin.take(py).map(|(code, _)| code),
        );
        let owner = this.loop_.take(py).expect("a handle in use has its loop");
        this.cancelled.set(py, false);
        this.copied_context.set(py, false);
        this.untracked_args.set(py, false);
        // SAFETY: GIL held.
        unsafe {
            if ffi::PyObject_GC_IsTracked(p) != 0 {
                ffi::PyObject_GC_UnTrack(p.cast());
            }
        }
        owner.get().keep_spare(py, h);
        decref(Some(owner));
        // Last: releasing these may run arbitrary Python code.
        let (callback, args, context, repr, source_traceback, lock, origin) = old;
        decref(origin);
        decref(lock);
        decref(callback);
        decref(args);
        decref(context);
        decref(repr);
        decref(source_traceback);
        None
    }

    /// A handle for one of the loop's own native callbacks that runs no
    /// user code (no context).
    pub fn new_native<T: NativeCallback>(py: Python<'_>, loop_: Py<LoopCore>, callback: Py<T>) -> PyResult<Py<Handle>> {
        let parts = Parts::new(py, loop_, callback.into_any(), PyTuple::empty(py).unbind(), None, true)?;
        Py::new(py, parts.into_handle(None, Some(fire_native::<T>)))
    }

    /// A handle for a transport's native reader or writer, which calls the
    /// protocol (`data_received`, ...): it fires inside `context`, the
    /// connection's own, as asyncio's reader handles run in the context
    /// copied when the transport began; so what a protocol sets there
    /// stays with its connection.
    pub fn new_native_in_context<T: NativeCallback>(py: Python<'_>, loop_: Py<LoopCore>, callback: Py<T>, context: Py<PyAny>) -> PyResult<Py<Handle>> {
        let parts = Parts::new(py, loop_, callback.into_any(), PyTuple::empty(py).unbind(), Some(context), true)?;
        Py::new(py, parts.into_handle(None, Some(fire_native::<T>)))
    }

    /// A copy of the current context, for `new_native_in_context`.
    pub fn copy_current_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
        // SAFETY: returns a new reference or NULL with an exception set.
        Ok(unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent())? }.unbind())
    }

    pub fn new_timer(
        py: Python<'_>,
        loop_: Py<LoopCore>,
        when: f64,
        when_given: Option<Py<PyAny>>,
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let init = PyClassInitializer::from(Parts::new(py, loop_, callback, args, context, false)?.into_handle(Some(when), None))
            .add_subclass(TimerHandle { when_given });
        let timer: Bound<'_, TimerHandle> = Bound::new(py, init)?;
        Ok(timer.into_super().unbind())
    }

    /// Takes a freshly made handle out of the garbage collector's sight while
    /// the loop holds it (ready queue or timer heap): the loop keeps it alive
    /// anyway, and traversing thousands of queued handles costs more than the
    /// callbacks. `release_queued` puts it back if anything else kept it.
    /// The context copy made for the handle goes out of sight with it: the
    /// handle is its only holder.
    pub fn untrack_queued(h: &Py<Handle>) {
        let this = h.get();
        unsafe {
            ffi::PyObject_GC_UnTrack(h.as_ptr().cast());
            if let (true, Some(ctx)) = (*this.copied_context.raw(), &*this.context.raw()) {
                ffi::PyObject_GC_UnTrack(ctx.as_ptr().cast());
            }
            // The *args tuple PyO3 built for the call is the handle's alone.
            let args = (*this.args.raw()).as_ref().map_or(std::ptr::null_mut(), |a| a.as_ptr());
            if !args.is_null() && ffi::PyTuple_GET_SIZE(args) > 0 && ffi::PyObject_GC_IsTracked(args) != 0 {
                ffi::PyObject_GC_UnTrack(args.cast());
                *this.untracked_args.raw() = true;
            }
        }
    }

    /// Drops the queue's reference to a handle, returning it to the garbage
    /// collector first if someone else still holds it.
    #[inline]
    pub fn release_queued(py: Python<'_>, h: Py<Handle>) {
        let p = h.as_ptr();
        let this = h.get();
        unsafe {
            let shared = ffi::Py_REFCNT(p) > 1;
            if shared && ffi::PyObject_GC_IsTracked(p) == 0 {
                ffi::PyObject_GC_Track(p.cast());
            }
            if *this.untracked_args.raw() {
                *this.untracked_args.raw() = false;
                let args = (*this.args.raw()).as_ref().map_or(std::ptr::null_mut(), |a| a.as_ptr());
                if !args.is_null() && (shared || ffi::Py_REFCNT(args) > 1) && ffi::PyObject_GC_IsTracked(args) == 0 {
                    ffi::PyObject_GC_Track(args.cast());
                }
            }
            // Always tracked again: a context's dealloc unlinks it from the
            // GC list unconditionally, so it must never die untracked.
            if let (true, Some(ctx)) = (*this.copied_context.raw(), &*this.context.raw()) {
                let c = ctx.as_ptr();
                if ffi::PyObject_GC_IsTracked(c) == 0 {
                    ffi::PyObject_GC_Track(c.cast());
                }
            }
            if shared {
                drop(h);
                return;
            }
        }
        drop(Self::recycle(py, h));
    }

    #[inline]
    pub fn is_cancelled(&self, py: Python<'_>) -> bool {
        self.cancelled.get(py)
    }

    /// The callback, unless the handle was cancelled.
    pub fn callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.callback.with(py, |c| c.as_ref().map(|c| c.clone_ref(py)))
    }

    pub fn when_value(&self) -> Option<f64> {
        self.when
    }

    pub fn set_scheduled(&self, py: Python<'_>, scheduled: bool) {
        self.scheduled.set(py, scheduled)
    }

    /// In `tick_clock` ticks.
    pub fn set_queued_at(&self, py: Python<'_>, t: u64) {
        self.queued_at.set(py, t)
    }

    /// When the handle was queued, if it was while metrics were on (else 0).
    pub fn queued_at(&self, py: Python<'_>) -> u64 {
        self.queued_at.get(py)
    }

    /// Where the handle was scheduled, as (file name, line, function), if
    /// it was while slow callbacks were reported.
    pub fn origin(&self, py: Python<'_>) -> PyResult<Option<(Py<PyAny>, i32, Py<PyAny>)>> {
        let Some((code, lasti)) = self.origin.with(py, |o| o.as_ref().map(|(c, l)| (c.clone_ref(py), *l))) else {
            return Ok(None);
        };
        // SAFETY: `code` is a live code object.
        let line = unsafe { ffi::PyCode_Addr2Line(code.as_ptr().cast(), lasti) };
        let code = code.bind(py);
        Ok(Some((code.getattr(pyo3::intern!(py, "co_filename"))?.unbind(), line, code.getattr(pyo3::intern!(py, "co_name"))?.unbind())))
    }

    /// Runs the handle through `run`, a replacement of `asyncio.Handle._run`
    /// (tools that time callbacks install one), as the stdlib loop runs every
    /// handle through `_run`. The loop's own context-less callbacks, which run
    /// no user code, keep the native path. Any exception from the replacement
    /// leaves the loop, as it leaves asyncio's `_run_once`.
    pub fn run_through(slf: &Bound<'_, Handle>, run: &Bound<'_, PyAny>) -> Result<(), RunError> {
        let py = slf.py();
        if slf.get().context.with(py, |c| c.is_none()) {
            return Self::run(slf);
        }
        match slf.get().locked(py, || run.call1((slf,))) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) | Err(e) => Err(RunError::Fatal(e)),
        }
    }

    /// Runs the callback in the handle's context. Ordinary exceptions go to the
    /// loop's exception handler; SystemExit and KeyboardInterrupt come back.
    #[inline]
    pub fn run(slf: &Bound<'_, Handle>) -> Result<(), RunError> {
        let py = slf.py();
        if slf.get().lock.with(py, |l| l.is_none()) {
            return Self::run_callback(slf);
        }
        // Cancelled while the loop waited for the lock: the callback is gone
        // and nothing runs.
        match slf.get().locked(py, || Self::run_callback(slf)) {
            Ok(outcome) => outcome,
            Err(e) if is_fatal(py, &e) => Err(RunError::Fatal(e)),
            Err(e) => {
                e.write_unraisable(py, Some(slf.as_any()));
                Ok(())
            }
        }
    }

    #[inline]
    fn run_callback(slf: &Bound<'_, Handle>) -> Result<(), RunError> {
        let py = slf.py();
        let this = slf.get();
        // Own references for the call: the callback may cancel its own handle.
        // Raw counts, as PyO3's owned handles check the GIL on every drop.
        if let Some(fire) = this.native {
            let Some(cb) = this.callback.with(py, |c| c.as_ref().map(|c| c.clone_ref(py))) else {
                return Ok(());
            };
            let ctx = this.context.with(py, |c| c.as_ref().map(|c| c.clone_ref(py)));
            // SAFETY: `ctx` is a Context, entered and left around the call.
            if let Some(ctx) = &ctx {
                if unsafe { ffi::PyContext_Enter(ctx.as_ptr()) } != 0 {
                    return Self::failed(slf, cb, None, PyErr::fetch(py));
                }
            }
            let fired = fire(cb.bind(py));
            if let Some(ctx) = &ctx {
                if unsafe { ffi::PyContext_Exit(ctx.as_ptr()) } != 0 {
                    return Self::failed(slf, cb, None, PyErr::fetch(py));
                }
            }
            return match fired {
                Ok(()) => Ok(()),
                Err(err) => Self::failed(slf, cb, None, err),
            };
        }
        let Some(cb) = this.callback.with(py, |c| c.as_ref().map(|c| c.as_ptr())) else {
            return Ok(());
        };
        let args = this.args.with(py, |a| a.as_ref().map_or(std::ptr::null_mut(), |a| a.as_ptr()));
        let ctx = this.context.with(py, |c| c.as_ref().map_or(std::ptr::null_mut(), |c| c.as_ptr()));
        // SAFETY: cb and args are live (held by the handle, and increfed for
        // the call); the GIL is held.
        let ok = unsafe {
            ffi::Py_INCREF(cb);
            if !args.is_null() {
                ffi::Py_INCREF(args);
            }
            let ok = if ctx.is_null() {
                let res = ffi::PyObject_CallNoArgs(cb);
                let failed = res.is_null();
                if !failed {
                    ffi::Py_DECREF(res);
                }
                !failed
            } else if ffi::PyContext_Enter(ctx) < 0 {
                false
            } else {
                let res = if !args.is_null() && ffi::PyTuple_GET_SIZE(args) > 0 {
                    ffi::PyObject_Call(cb, args, std::ptr::null_mut())
                } else {
                    ffi::PyObject_CallNoArgs(cb)
                };
                // Exit even after a failed call; keep the call's exception.
                let failed = res.is_null();
                if failed {
                    let err = PyErr::fetch(py);
                    ffi::PyContext_Exit(ctx);
                    err.restore(py);
                } else {
                    ffi::Py_DECREF(res);
                    ffi::PyContext_Exit(ctx);
                }
                !failed
            };
            if ok {
                ffi::Py_DECREF(cb);
                if !args.is_null() {
                    ffi::Py_DECREF(args);
                }
            }
            ok
        };
        if ok {
            return Ok(());
        }
        let err = PyErr::fetch(py);
        // SAFETY: the references increfed for the call, now owned here.
        let cb: Py<PyAny> = unsafe { Bound::from_owned_ptr(py, cb).unbind() };
        let args: Option<Py<PyTuple>> = if args.is_null() {
            None
        } else {
            Some(unsafe { Bound::from_owned_ptr(py, args).cast_into_unchecked::<PyTuple>().unbind() })
        };
        Self::failed(slf, cb, args, err)
    }

    /// A callback raised `err`: SystemExit / KeyboardInterrupt leave the
    /// loop, the rest go to the exception handler.
    fn failed(slf: &Bound<'_, Handle>, cb: Py<PyAny>, args: Option<Py<PyTuple>>, err: PyErr) -> Result<(), RunError> {
        let py = slf.py();
        if is_fatal(py, &err) {
            return Err(RunError::Fatal(err));
        }
        if let Err(e) = Self::report(slf, cb, args, err) {
            // The exception handler itself failed hard: treat like the loop would.
            if is_fatal(py, &e) {
                return Err(RunError::Fatal(e));
            }
            e.write_unraisable(py, Some(slf.as_any()));
        }
        Ok(())
    }

    fn report(slf: &Bound<'_, Handle>, cb: Py<PyAny>, args: Option<Py<PyTuple>>, err: PyErr) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let args: Py<PyAny> = match args {
            Some(a) => a.into_any(),
            None => PyTuple::empty(py).into_any().unbind(),
        };
        let src = format_callback_source(py, cb, args, this.owner(py).get().debug(py))?;
        let ctx = PyDict::new(py);
        ctx.set_item("message", format!("Exception in callback {}", src))?;
        ctx.set_item("exception", err.value(py))?;
        ctx.set_item("handle", slf)?;
        if let Some(tb) = this.source_traceback.with(py, |t| t.as_ref().map(|t| t.clone_ref(py))) {
            if tb.bind(py).is_truthy()? {
                ctx.set_item("source_traceback", tb)?;
            }
        }
        this.owner(py).bind(py).call_method1("call_exception_handler", (ctx,))?;
        Ok(())
    }

    fn repr_info(slf: &Bound<'_, Handle>) -> PyResult<Vec<String>> {
        let py = slf.py();
        let this = slf.get();
        let name = if this.lock.with(py, |l| l.is_some()) { "_ThreadSafeHandle".to_string() } else { slf.get_type().name()?.to_string() };
        let mut info = vec![name];
        if this.cancelled.get(py) {
            info.push("cancelled".into());
        }
        if let Some(when) = this.when {
            info.push(format!("when={}", when.into_pyobject(py)?.repr()?));
        }
        let cb = this.callback.with(py, |c| c.as_ref().map(|c| c.clone_ref(py)));
        if let Some(cb) = cb {
            let args = this.args.with(py, |a| a.as_ref().map(|a| a.clone_ref(py)));
            let src = format_callback_source(py, cb, args, this.owner(py).get().debug(py))?;
            info.push(src.extract()?);
        }
        if let Some(tb) = this.source_traceback.with(py, |t| t.as_ref().map(|t| t.clone_ref(py))) {
            let tb = tb.bind(py);
            if tb.is_truthy()? {
                let frame = tb.get_item(-1)?;
                info.push(format!("created at {}:{}", frame.get_item(0)?, frame.get_item(1)?));
            }
        }
        Ok(info)
    }
}

impl Drop for Handle {
    // Runs in tp_dealloc with the GIL held: plain decrefs, without the GIL
    // check PyO3 makes for every owned reference it drops.
    fn drop(&mut self) {
        decref(self.callback.get_mut().take());
        decref(self.args.get_mut().take());
        decref(self.context.get_mut().take());
        decref(self.repr.get_mut().take());
        decref(self.source_traceback.get_mut().take());
        decref(self.loop_.get_mut().take());
        decref(self.lock.get_mut().take());
        decref(self.origin.get_mut().take().map(|(code, _)| code));
    }
}

#[pymethods]
impl Handle {
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // SAFETY: called by the garbage collector only.
        unsafe {
            visit.call(self.callback.peek_for_gc())?;
            visit.call(self.args.peek_for_gc())?;
            visit.call(self.repr.peek_for_gc())?;
            visit.call(self.source_traceback.peek_for_gc())?;
        }
        unsafe {
            visit.call(self.context.peek_for_gc())?;
            visit.call(self.loop_.peek_for_gc())?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        // The callback and its arguments are what close reference cycles
        // (an object holding a handle to its own method).
        Python::attach(|py| {
            let taken = (self.callback.take(py), self.args.take(py), self.repr.take(py), self.source_traceback.take(py));
            drop(taken);
        })
    }

    pub fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().locked(slf.py(), || Self::cancel_now(slf))?
    }

    fn cancelled(&self, py: Python<'_>) -> PyResult<bool> {
        self.locked(py, || self.cancelled.get(py))
    }

    fn get_context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.context.with(py, |c| c.as_ref().map(|c| c.clone_ref(py)))
    }

    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        match Handle::run(slf) {
            Ok(()) => Ok(()),
            Err(RunError::Fatal(e)) => Err(e),
        }
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.callback.with(py, |c| c.as_ref().map(|c| c.clone_ref(py)))
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
        self.args.with(py, |a| a.as_ref().map(|a| a.clone_ref(py)))
    }

    #[getter]
    fn _cancelled(&self, py: Python<'_>) -> bool {
        self.cancelled.get(py)
    }

    #[getter]
    fn _context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.context.with(py, |c| c.as_ref().map(|c| c.clone_ref(py)))
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.owner(py).clone_ref(py).into_any()
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Py<PyAny> {
        self.source_traceback
            .with(py, |t| t.as_ref().map(|t| t.clone_ref(py)))
            .unwrap_or_else(|| py.None())
    }

    /// asyncio's own `Handle` / `TimerHandle`: `isinstance()` falls back to
    /// `__class__`, so code that checks for asyncio's handle classes accepts
    /// ours (a native class cannot subclass the Python ones).
    #[getter]
    fn __class__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if self.lock.with(py, |l| l.is_some()) {
            if let Some(class) = thread_safe_handle_class(py)? {
                return Ok(class.clone_ref(py));
            }
        }
        let cell = if self.when.is_some() { &ASYNCIO_TIMER_HANDLE } else { &ASYNCIO_HANDLE };
        let name = if self.when.is_some() { "TimerHandle" } else { "Handle" };
        Ok(cell.import(py, "asyncio.events", name)?.clone().unbind())
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Some(r) = slf.get().repr.with(py, |r| r.as_ref().map(|r| r.clone_ref(py))) {
            return Ok(r);
        }
        let info = Handle::repr_info(slf)?;
        Ok(format!("<{}>", info.join(" ")).into_pyobject(py)?.into_any().unbind())
    }
}

#[pyclass(frozen, extends = Handle, module = "ferroloop")]
pub struct TimerHandle {
    /// The object `call_at` was given, which `when()` returns as asyncio's
    /// does (an int stays an int); None when it was the float itself.
    when_given: Option<Py<PyAny>>,
}

impl TimerHandle {
    fn when_of(obj: &Bound<'_, PyAny>) -> Option<f64> {
        obj.cast::<Handle>().ok().and_then(|h| h.get().when)
    }

    fn same_callback(a: &Bound<'_, Handle>, b: &Bound<'_, Handle>) -> PyResult<bool> {
        let py = a.py();
        let (x, y) = (a.get(), b.get());
        let eq = |p: Option<Py<PyAny>>, q: Option<Py<PyAny>>| -> PyResult<bool> {
            match (p, q) {
                (None, None) => Ok(true),
                (Some(p), Some(q)) => p.bind(py).eq(q.bind(py)),
                _ => Ok(false),
            }
        };
        let cb = |h: &Handle| h.callback.with(py, |c| c.as_ref().map(|c| c.clone_ref(py)));
        let args = |h: &Handle| h.args.with(py, |c| c.as_ref().map(|c| c.clone_ref(py).into_any()));
        Ok(eq(cb(x), cb(y))? && eq(args(x), args(y))? && x.cancelled.get(py) == y.cancelled.get(py))
    }
}

#[pymethods]
impl TimerHandle {
    fn when(slf: PyRef<'_, Self>) -> PyResult<Py<PyAny>> {
        Self::_when(slf)
    }

    #[getter]
    fn _when(slf: PyRef<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        match &slf.when_given {
            Some(w) => Ok(w.clone_ref(py)),
            None => Ok(slf.as_super().when.unwrap_or(f64::NAN).into_pyobject(py)?.into_any().unbind()),
        }
    }

    #[getter]
    fn _scheduled(slf: PyRef<'_, Self>) -> bool {
        let py = slf.py();
        slf.as_super().scheduled.get(py)
    }

    fn __hash__(slf: PyRef<'_, Self>) -> PyResult<isize> {
        let py = slf.py();
        slf.as_super().when.unwrap_or(0.0).into_pyobject(py)?.hash()
    }

    fn __richcmp__(
        slf: &Bound<'_, Self>,
        other: &Bound<'_, PyAny>,
        op: pyo3::basic::CompareOp,
    ) -> PyResult<Py<PyAny>> {
        use pyo3::basic::CompareOp::*;
        let py = slf.py();
        let (Some(a), Some(b), Ok(other_h)) =
            (slf.as_super().get().when, Self::when_of(other), other.cast::<TimerHandle>())
        else {
            return Ok(py.NotImplemented());
        };
        let (me, them) = (slf.as_super(), other_h.as_super());
        let equal = || -> PyResult<bool> { Ok(a == b && Self::same_callback(me, them)?) };
        let r = match op {
            Lt => a < b,
            Gt => a > b,
            Le => a < b || equal()?,
            Ge => a > b || equal()?,
            Eq => equal()?,
            Ne => !equal()?,
        };
        Ok(r.into_pyobject(py)?.to_owned().into_any().unbind())
    }
}

/// Registers the handle classes with the extension module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Handle>()?;
    m.add_class::<TimerHandle>()?;
    Ok(())
}
