//! What the transport cores share (stream, datagram, pipes), written once as
//! traits with default methods; each core says where its state is.
//!
//! - `ReadControl`: asyncio's `is_reading`, `pause_reading`,
//!   `resume_reading`, and the start of reading once `connection_made` ran.
//! - `WriteFlow`: telling the protocol `pause_writing()` / `resume_writing()`
//!   at the watermarks, with asyncio's report when those calls fail.
//! - `Closing`: the selector transports' `close()` (after the buffer
//!   drains) and `_force_close(exc)` (at once, dropping the buffer), ending
//!   in the Python transport's `_call_connection_lost` on the next iteration.
//!
//! The Python-facing methods these give are written once too, as macros
//! that add a `#[pymethods]` block to a core: `reading_methods!`,
//! `write_limit_methods!` and `closing_methods!`.
//!
//! Also the start every socket transport shares (`add_socket_extra`,
//! `start_transport`) and the loop's fd -> transport record asyncio keeps in
//! `loop._transports` (`track_transport`, `forget_transport`).

use crate::loop_core::event_loop::LoopCore;
use crate::transports::flow_control::FlowControl;
use crate::loop_core::handle::is_fatal;
use pyo3::exceptions::PyOSError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTuple, PyType, PyWeakrefReference};
use pyo3::PyClass;
use std::os::fd::RawFd;

static TRANSPORT_SOCKET: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SET_RESULT_UNLESS_CANCELLED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The extra info asyncio's socket transports give: the socket (as a
/// `TransportSocket`), its own address, and the peer's unless given.
#[pyfunction]
pub fn add_socket_extra(extra: &Bound<'_, PyAny>, sock: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = extra.py();
    let wrapper = TRANSPORT_SOCKET.import(py, "asyncio.trsock", "TransportSocket")?.call1((sock,))?;
    extra.set_item(intern!(py, "socket"), wrapper)?;
    extra.set_item(intern!(py, "sockname"), address_or_none(py, sock.call_method0(intern!(py, "getsockname")))?)?;
    if !extra.contains(intern!(py, "peername"))? {
        extra.set_item(intern!(py, "peername"), address_or_none(py, sock.call_method0(intern!(py, "getpeername")))?)?;
    }
    Ok(())
}

fn address_or_none<'py>(py: Python<'py>, address: PyResult<Bound<'py, PyAny>>) -> PyResult<Option<Bound<'py, PyAny>>> {
    match address {
        Ok(a) => Ok(Some(a)),
        Err(e) if e.is_instance_of::<PyOSError>(py) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a socket transport's `__init__` does once its core exists: the
/// attributes the Python side reads, the loop's record of the fd, and the
/// callbacks asyncio schedules, in its order: `connection_made`, then the
/// start of reading, then the waiter.
#[pyfunction]
#[pyo3(signature = (transport, loop_, fd, core, protocol, waiter=None))]
pub fn start_transport(
    transport: &Bound<'_, PyAny>,
    loop_: &Bound<'_, LoopCore>,
    fd: RawFd,
    core: &Bound<'_, PyAny>,
    protocol: &Bound<'_, PyAny>,
    waiter: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = transport.py();
    transport.setattr(intern!(py, "_loop"), loop_)?;
    transport.setattr(intern!(py, "_sock_fd"), fd)?;
    transport.setattr(intern!(py, "_core"), core)?;
    track_transport(loop_.as_any(), fd, transport)?;
    let soon = |callback: Bound<'_, PyAny>, args: Bound<'_, PyTuple>| LoopCore::call_soon(loop_, callback, args, None);
    soon(protocol.getattr(intern!(py, "connection_made"))?, PyTuple::new(py, [transport])?)?;
    soon(core.getattr(intern!(py, "_start_reading"))?, PyTuple::empty(py))?;
    if let Some(waiter) = waiter.filter(|w| !w.is_none()) {
        let set_result = SET_RESULT_UNLESS_CANCELLED.import(py, "asyncio.futures", "_set_result_unless_cancelled")?;
        soon(set_result.clone(), PyTuple::new(py, [waiter.clone(), py.None().into_bound(py)])?)?;
    }
    Ok(())
}

/// Records `transport` as the user of `fd` (weakly: an abandoned transport
/// must still be collected and warn), for `_ensure_fd_no_transport`.
#[pyfunction]
pub fn track_transport(loop_: &Bound<'_, PyAny>, fd: RawFd, transport: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = loop_.py();
    loop_.getattr(intern!(py, "_transports"))?.set_item(fd, PyWeakrefReference::new(transport)?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(add_socket_extra, m)?)?;
    m.add_function(wrap_pyfunction!(start_transport, m)?)?;
    m.add_function(wrap_pyfunction!(track_transport, m)?)?;
    Ok(())
}

/// Drops the record of `fd` if it is still `transport`'s: the connection is
/// over, and the fd may already belong to someone else.
pub fn forget_transport(loop_: &Bound<'_, PyAny>, fd: RawFd, transport: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = loop_.py();
    let transports = loop_.getattr(intern!(py, "_transports"))?;
    let ours = match transports.get_item(fd) {
        Ok(r) => r.cast::<PyWeakrefReference>().ok().and_then(|r| r.upgrade()).is_some_and(|t| t.is(transport)),
        Err(_) => false,
    };
    if ours {
        transports.del_item(fd)?;
    }
    Ok(())
}

pub trait ReadControl: PyClass<Frozen = True> + Sync {
    /// (closing, paused)
    fn read_flags(&self, py: Python<'_>) -> (bool, bool);
    fn set_paused(&self, py: Python<'_>, paused: bool);
    /// Registers (or drops) the core's reader with the loop.
    fn watch_reads(slf: &Bound<'_, Self>, on: bool) -> PyResult<()>;
    fn event_loop(&self) -> &Py<LoopCore>;
    /// The Python transport, until the connection is lost.
    fn py_transport<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>>;

    fn reading(&self, py: Python<'_>) -> bool {
        let (closing, paused) = self.read_flags(py);
        !closing && !paused
    }

    fn pause(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if !slf.get().reading(py) {
            return Ok(());
        }
        slf.get().set_paused(py, true);
        Self::watch_reads(slf, false)?;
        debug_log(slf.get(), py, "%r pauses reading")
    }

    fn resume(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (closing, paused) = slf.get().read_flags(py);
        if closing || !paused {
            return Ok(());
        }
        slf.get().set_paused(py, false);
        Self::watch_reads(slf, true)?;
        debug_log(slf.get(), py, "%r resumes reading")
    }

    fn start(slf: &Bound<'_, Self>) -> PyResult<()> {
        if slf.get().reading(slf.py()) {
            Self::watch_reads(slf, true)?;
        }
        Ok(())
    }
}

/// asyncio logs reading switches in debug mode, through the transport.
fn debug_log<T: ReadControl>(core: &T, py: Python<'_>, fmt: &str) -> PyResult<()> {
    if core.event_loop().get().debug(py) {
        if let Some(t) = core.py_transport(py) {
            t.call_method1("_log_debug", (fmt,))?;
        }
    }
    Ok(())
}

/// `is_reading`, `pause_reading`, `resume_reading` and `_start_reading`
/// (scheduled after `connection_made`) for a core with `ReadControl`.
#[macro_export]
macro_rules! reading_methods {
    ($core:ty) => {
        #[pyo3::pymethods]
        impl $core {
            fn is_reading(&self, py: pyo3::Python<'_>) -> bool {
                $crate::transports::transport_core::ReadControl::reading(self, py)
            }

            fn pause_reading(slf: &pyo3::Bound<'_, Self>) -> pyo3::PyResult<()> {
                $crate::transports::transport_core::ReadControl::pause(slf)
            }

            fn resume_reading(slf: &pyo3::Bound<'_, Self>) -> pyo3::PyResult<()> {
                $crate::transports::transport_core::ReadControl::resume(slf)
            }

            fn _start_reading(slf: &pyo3::Bound<'_, Self>) -> pyo3::PyResult<()> {
                $crate::transports::transport_core::ReadControl::start(slf)
            }
        }
    };
}

/// `set_write_buffer_limits`, `get_write_buffer_limits` and the
/// `_protocol_paused` getter for a core with `WriteFlow`.
#[macro_export]
macro_rules! write_limit_methods {
    ($core:ty) => {
        #[pyo3::pymethods]
        impl $core {
            #[pyo3(signature = (high=None, low=None))]
            fn set_write_buffer_limits(slf: &pyo3::Bound<'_, Self>, high: Option<i64>, low: Option<i64>) -> pyo3::PyResult<()> {
                $crate::transports::transport_core::WriteFlow::with_flow(slf.get(), slf.py(), |f, _| f.set_limits(high, low))
                    .map_err(pyo3::exceptions::PyValueError::new_err)?;
                $crate::transports::transport_core::WriteFlow::maybe_pause_protocol(slf)
            }

            fn get_write_buffer_limits(&self, py: pyo3::Python<'_>) -> (usize, usize) {
                $crate::transports::transport_core::WriteFlow::with_flow(self, py, |f, _| f.limits())
            }

            #[getter]
            fn _protocol_paused(&self, py: pyo3::Python<'_>) -> bool {
                $crate::transports::transport_core::WriteFlow::with_flow(self, py, |f, _| f.paused)
            }
        }
    };
}

pub trait WriteFlow: PyClass<Frozen = True> + Sync {
    /// Runs `f` on the flow-control state and the bytes now buffered.
    fn with_flow<R>(&self, py: Python<'_>, f: impl FnOnce(&mut FlowControl, usize) -> R) -> R;
    fn protocol(&self, py: Python<'_>) -> Option<Py<PyAny>>;
    fn flow_transport<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>>;

    fn maybe_pause_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if slf.get().with_flow(py, |f, buffered| f.should_pause(buffered)) {
            protocol_flow_call(slf.get(), py, "pause_writing")?;
        }
        Ok(())
    }

    fn maybe_resume_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if slf.get().with_flow(py, |f, buffered| f.should_resume(buffered)) {
            protocol_flow_call(slf.get(), py, "resume_writing")?;
        }
        Ok(())
    }
}

/// Calls the protocol's pause/resume_writing; a failure goes to the loop's
/// exception handler (through the transport), as asyncio's flow control does.
fn protocol_flow_call<T: WriteFlow>(core: &T, py: Python<'_>, method: &str) -> PyResult<()> {
    let Some(protocol) = core.protocol(py) else { return Ok(()) };
    if let Err(e) = protocol.call_method0(py, method) {
        if is_fatal(py, &e) {
            return Err(e);
        }
        if let Some(t) = core.flow_transport(py) {
            t.call_method1("_protocol_call_failed", (format!("protocol.{}() failed", method), e.value(py)))?;
        }
    }
    Ok(())
}

/// asyncio's `_SelectorTransport.close` / `_force_close`, for the cores
/// whose state has a closing flag, a lost count and a write buffer.
pub trait Closing: ReadControl {
    /// Sets the closing flag; returns what it was.
    fn mark_closing(&self, py: Python<'_>) -> bool;
    fn conn_lost(&self, py: Python<'_>) -> u32;
    fn count_lost(&self, py: Python<'_>);
    fn has_unsent(&self, py: Python<'_>) -> bool;
    /// Drops what was not sent yet (abort); returns whether there was any.
    fn drop_unsent(&self, py: Python<'_>) -> bool;
    fn watch_writes(slf: &Bound<'_, Self>, on: bool) -> PyResult<()>;

    /// The transport's `_call_connection_lost(exc)`, on the next iteration.
    fn schedule_connection_lost(slf: &Bound<'_, Self>, exc: Py<PyAny>) -> PyResult<()> {
        let py = slf.py();
        let Some(t) = slf.get().py_transport(py) else { return Ok(()) };
        let cb = t.getattr(intern!(py, "_call_connection_lost"))?;
        LoopCore::call_soon(slf.get().event_loop().bind(py), cb, PyTuple::new(py, [exc])?, None)?;
        Ok(())
    }

    /// Stops reading; connection_lost(None) once the buffer is sent.
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.mark_closing(py) {
            return Ok(());
        }
        Self::watch_reads(slf, false)?;
        if !this.has_unsent(py) {
            this.count_lost(py);
            Self::watch_writes(slf, false)?;
            Self::schedule_connection_lost(slf, py.None())?;
        }
        Ok(())
    }

    /// Drops the buffer and stops both directions; connection_lost(exc) soon.
    fn force_close(slf: &Bound<'_, Self>, exc: Py<PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.conn_lost(py) > 0 {
            return Ok(());
        }
        if this.drop_unsent(py) {
            Self::watch_writes(slf, false)?;
        }
        if !this.mark_closing(py) {
            Self::watch_reads(slf, false)?;
        }
        this.count_lost(py);
        Self::schedule_connection_lost(slf, exc)
    }
}

/// `close`, `abort`, `_force_close`, `is_closing` and the `_closing` /
/// `_conn_lost` getters for a core with `Closing`.
#[macro_export]
macro_rules! closing_methods {
    ($core:ty) => {
        #[pyo3::pymethods]
        impl $core {
            #[pyo3(name = "close")]
            fn py_close(slf: &pyo3::Bound<'_, Self>) -> pyo3::PyResult<()> {
                $crate::transports::transport_core::Closing::close(slf)
            }

            fn abort(slf: &pyo3::Bound<'_, Self>) -> pyo3::PyResult<()> {
                $crate::transports::transport_core::Closing::force_close(slf, slf.py().None())
            }

            fn _force_close(slf: &pyo3::Bound<'_, Self>, exc: pyo3::Py<pyo3::PyAny>) -> pyo3::PyResult<()> {
                $crate::transports::transport_core::Closing::force_close(slf, exc)
            }

            fn is_closing(&self, py: pyo3::Python<'_>) -> bool {
                $crate::transports::transport_core::ReadControl::read_flags(self, py).0
            }

            #[getter]
            fn _closing(&self, py: pyo3::Python<'_>) -> bool {
                $crate::transports::transport_core::ReadControl::read_flags(self, py).0
            }

            #[getter]
            fn _conn_lost(&self, py: pyo3::Python<'_>) -> u32 {
                $crate::transports::transport_core::Closing::conn_lost(self, py)
            }
        }
    };
}

/// `cls.__new__(cls)`: an instance that a native builder then initialises
/// (`init_socket_transport`, the TLS layer's transport and `SSLObject`).
pub(crate) fn new_instance<'py>(cls: &Bound<'py, PyType>) -> PyResult<Bound<'py, PyAny>> {
    let py = cls.py();
    // SAFETY: the type's own tp_new, called with no arguments.
    unsafe {
        let tp = cls.as_type_ptr();
        let new = (*tp).tp_new.ok_or_else(|| pyo3::exceptions::PyTypeError::new_err("cannot create instances"))?;
        Bound::from_owned_ptr_or_err(py, new(tp, PyTuple::empty(py).as_ptr(), std::ptr::null_mut()))
    }
}
