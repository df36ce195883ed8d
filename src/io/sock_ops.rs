//! The native halves of `sock_recv` and `sock_sendall`.
//!
//! The Python coroutines in `_sock.py` call `sock_recv_start` /
//! `sock_sendall_start`: the socket call is tried at once, without raising
//! BlockingIOError when the socket is not ready, and otherwise a `SockOp`
//! is made the fd's reader or writer. It retries the call each time the poll
//! reports the fd ready and resolves the future when it is done, taking
//! itself off the fd; no Python callback, partial or exception is involved.

use crate::loop_core::event_loop::LoopCore;
use crate::loop_core::gil_cell::GilCell;
use crate::loop_core::handle::{Handle, NativeCallback};
use crate::io::os_error;
use crate::io::read_bytes::ReadBytes;
use crate::io::sock_io::{try_recv, try_send, Attempt, HeldBuffer};
use crate::io::poller::{READABLE, WRITABLE};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt};
use pyo3::{PyTraverseError, PyVisit};
use std::os::fd::RawFd;

enum Op {
    Recv { n: usize },
    SendAll { data: HeldBuffer, pos: GilCell<usize> },
}

/// A pending socket call, registered as the fd's reader or writer.
#[pyclass(frozen, module = "ferroloop._ferroloop")]
pub struct SockOp {
    loop_: Py<LoopCore>,
    fut: Py<PyAny>,
    fd: RawFd,
    op: Op,
}

impl SockOp {
    fn dir(&self) -> u8 {
        match self.op {
            Op::Recv { .. } => READABLE,
            Op::SendAll { .. } => WRITABLE,
        }
    }

    /// Leaves the fd, as asyncio's done callback would remove the reader.
    fn unwatch(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(h) = self.loop_.get().take_watch(py, self.fd, self.dir()) {
            Handle::cancel(h.bind(py))?;
        }
        Ok(())
    }

    fn register(loop_: &Bound<'_, LoopCore>, fd: RawFd, op: Op) -> PyResult<Py<PyAny>> {
        let py = loop_.py();
        let fut = LoopCore::create_future(loop_)?;
        let sock_op = SockOp { loop_: loop_.clone().unbind(), fut: fut.clone_ref(py), fd, op };
        let dir = sock_op.dir();
        let handle = Handle::new_native(py, loop_.clone().unbind(), Py::new(py, sock_op)?)?;
        LoopCore::watch(loop_, fd, dir, handle)?;
        Ok(fut)
    }
}

impl NativeCallback for SockOp {
    fn fire(&self, py: Python<'_>) -> PyResult<()> {
        self.__call__(py)
    }
}

#[pymethods]
impl SockOp {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let fut = self.fut.bind(py);
        if fut.call_method0(pyo3::intern!(py, "done"))?.is_truthy()? {
            // Cancelled while waiting: nothing to deliver.
            return self.unwatch(py);
        }
        let outcome: Attempt<Py<PyAny>> = match &self.op {
            Op::Recv { n } => try_recv(py, self.fd, *n).map(ReadBytes::into_any),
            Op::SendAll { data, pos } => {
                let start = pos.get(py);
                match try_send(py, self.fd, &data.bytes()[start..]) {
                    Attempt::Done(k) if start + k < data.bytes().len() => {
                        pos.set(py, start + k);
                        Attempt::NotReady
                    }
                    Attempt::Done(_) => Attempt::Done(py.None()),
                    Attempt::NotReady => Attempt::NotReady,
                    Attempt::Failed(e) => Attempt::Failed(e),
                }
            }
        };
        match outcome {
            Attempt::NotReady => Ok(()),
            Attempt::Done(value) => {
                self.unwatch(py)?;
                fut.call_method1(pyo3::intern!(py, "set_result"), (value,))?;
                Ok(())
            }
            Attempt::Failed(err) => {
                self.unwatch(py)?;
                fut.call_method1(pyo3::intern!(py, "set_exception"), (err.value(py),))?;
                Ok(())
            }
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.fut)
    }
}

fn checked_fd(py: Python<'_>, fd: RawFd) -> PyResult<RawFd> {
    // A closed socket's fileno() is -1; socket.recv would say EBADF.
    if fd < 0 {
        Err(os_error::from_errno(py, libc::EBADF))
    } else {
        Ok(fd)
    }
}

/// `sock.recv(n)` now if data is there (returns bytes), else a future for it.
/// None when `n` is not an int a C `ssize_t` holds: the caller's `sock.recv`
/// then raises the error Python gives.
#[pyfunction]
fn sock_recv_start(loop_: &Bound<'_, LoopCore>, fd: RawFd, n: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
    let py = loop_.py();
    let Some(n) = n.cast::<PyInt>().ok().and_then(|n| n.extract::<isize>().ok()) else { return Ok(None) };
    if n < 0 {
        return Err(PyValueError::new_err("negative buffersize in recv"));
    }
    if n == 0 {
        // socket.recv(0) answers b'' without looking at the socket.
        return Ok(Some(PyBytes::new(py, b"").into_any().unbind()));
    }
    let fd = checked_fd(py, fd)?;
    match try_recv(py, fd, n as usize) {
        Attempt::Done(data) => Ok(Some(data.into_any())),
        Attempt::Failed(e) => Err(e),
        // asyncio looks at the loop only when it has to wait.
        Attempt::NotReady => {
            loop_.get().check_closed(py)?;
            SockOp::register(loop_, fd, Op::Recv { n: n as usize }).map(Some)
        }
    }
}

/// Sends `data`: returns None when it all went out at once, else a future
/// resolved when the rest has been sent.
#[pyfunction]
fn sock_sendall_start(loop_: &Bound<'_, LoopCore>, fd: RawFd, data: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
    let py = loop_.py();
    let held = HeldBuffer::get(data)?;
    let fd = checked_fd(py, fd)?;
    let sent = match try_send(py, fd, held.bytes()) {
        Attempt::Done(k) => k,
        Attempt::NotReady => 0,
        Attempt::Failed(e) => return Err(e),
    };
    if sent == held.bytes().len() {
        return Ok(None);
    }
    // asyncio looks at the loop only when it has to wait.
    loop_.get().check_closed(py)?;
    SockOp::register(loop_, fd, Op::SendAll { data: held, pos: GilCell::new(sent) }).map(Some)
}

/// The awaiting coroutine gave up on `fut` (cancelled): take its op off the fd
/// unless someone else's reader or writer has replaced it meanwhile.
#[pyfunction]
fn sock_abandon(loop_: &Bound<'_, LoopCore>, fd: RawFd, fut: &Bound<'_, PyAny>, writing: bool) -> PyResult<()> {
    let py = loop_.py();
    let dir = if writing { WRITABLE } else { READABLE };
    let Some(handle) = loop_.get().watcher(py, fd, dir) else { return Ok(()) };
    let ours = handle
        .get()
        .callback(py)
        .and_then(|cb| cb.bind(py).cast::<SockOp>().ok().map(|op| op.get().fut.is(fut)))
        .unwrap_or(false);
    if ours {
        if let Some(h) = loop_.get().take_watch(py, fd, dir) {
            Handle::cancel(h.bind(py))?;
        }
    }
    Ok(())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SockOp>()?;
    m.add_function(wrap_pyfunction!(sock_recv_start, m)?)?;
    m.add_function(wrap_pyfunction!(sock_sendall_start, m)?)?;
    m.add_function(wrap_pyfunction!(sock_abandon, m)?)?;
    Ok(())
}
