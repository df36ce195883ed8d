//! The native halves of `sock_recv` and `sock_sendall`.
//!
//! The Python coroutines in `sock.py` call `sock_recv_start` /
//! `sock_sendall_start`: the socket call is tried at once, without raising
//! BlockingIOError when the socket is not ready, and otherwise a `SockOp`
//! is made the fd's reader or writer. It retries the call each time the poll
//! reports the fd ready and resolves the future when it is done, taking
//! itself off the fd; no Python callback, partial or exception is involved.

use crate::event_loop::LoopCore;
use crate::gil_cell::GilCell;
use crate::handle::Handle;
use crate::os_error;
use crate::poller::{READABLE, WRITABLE};
use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};
use std::os::fd::RawFd;

unsafe extern "C" {
    // Public in CPython's C API, not re-exported by pyo3-ffi.
    fn _PyBytes_Resize(bytes: *mut *mut ffi::PyObject, newsize: ffi::Py_ssize_t) -> std::os::raw::c_int;
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn would_block(e: i32) -> bool {
    e == libc::EAGAIN || e == libc::EWOULDBLOCK || e == libc::EINTR
}


/// Outcome of one non-blocking socket call.
enum Attempt<T> {
    Done(T),
    NotReady,
    Failed(PyErr),
}

/// `recv(fd, n)` into a new bytes object, as `socket.recv` does.
fn try_recv(py: Python<'_>, fd: RawFd, n: usize) -> Attempt<Py<PyAny>> {
    unsafe {
        let mut obj = ffi::PyBytes_FromStringAndSize(std::ptr::null(), n as ffi::Py_ssize_t);
        if obj.is_null() {
            return Attempt::Failed(PyErr::fetch(py));
        }
        let got = libc::recv(fd, ffi::PyBytes_AsString(obj).cast(), n, libc::MSG_DONTWAIT);
        if got < 0 {
            let e = errno();
            ffi::Py_DECREF(obj);
            return if would_block(e) { Attempt::NotReady } else { Attempt::Failed(os_error::from_errno(py, e)) };
        }
        if (got as usize) != n && _PyBytes_Resize(&mut obj, got as ffi::Py_ssize_t) < 0 {
            return Attempt::Failed(PyErr::fetch(py));
        }
        Attempt::Done(Bound::from_owned_ptr(py, obj).unbind())
    }
}

/// One `send` of `data`, returning how much went out.
fn try_send(py: Python<'_>, fd: RawFd, data: &[u8]) -> Attempt<usize> {
    let sent = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if sent >= 0 {
        return Attempt::Done(sent as usize);
    }
    let e = errno();
    if would_block(e) {
        Attempt::NotReady
    } else {
        Attempt::Failed(os_error::from_errno(py, e))
    }
}

/// A held buffer export (bytes, bytearray, memoryview, array…).
struct HeldBuffer(Box<ffi::Py_buffer>);

// SAFETY: the buffer is only read and released with the GIL held.
unsafe impl Send for HeldBuffer {}
unsafe impl Sync for HeldBuffer {}

impl HeldBuffer {
    fn get(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut view: Box<ffi::Py_buffer> = Box::new(unsafe { std::mem::zeroed() });
        if unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, ffi::PyBUF_SIMPLE) } < 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        Ok(HeldBuffer(view))
    }

    fn bytes(&self) -> &[u8] {
        if self.0.len == 0 {
            return &[];
        }
        unsafe { std::slice::from_raw_parts(self.0.buf as *const u8, self.0.len as usize) }
    }
}

impl Drop for HeldBuffer {
    fn drop(&mut self) {
        Python::attach(|_| unsafe { ffi::PyBuffer_Release(&mut *self.0) });
    }
}

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
        let handle = Handle::new_native(py, loop_.clone().unbind(), Py::new(py, sock_op)?.into_any())?;
        LoopCore::watch(loop_, fd, dir, handle)?;
        Ok(fut)
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
            Op::Recv { n } => try_recv(py, self.fd, *n),
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
#[pyfunction]
fn sock_recv_start(loop_: &Bound<'_, LoopCore>, fd: RawFd, n: isize) -> PyResult<Py<PyAny>> {
    let py = loop_.py();
    loop_.get().check_closed(py)?;
    if n < 0 {
        return Err(PyValueError::new_err("negative buffersize in recv"));
    }
    let fd = checked_fd(py, fd)?;
    match try_recv(py, fd, n as usize) {
        Attempt::Done(data) => Ok(data),
        Attempt::Failed(e) => Err(e),
        Attempt::NotReady => SockOp::register(loop_, fd, Op::Recv { n: n as usize }),
    }
}

/// Sends `data`: returns None when it all went out at once, else a future
/// resolved when the rest has been sent.
#[pyfunction]
fn sock_sendall_start(loop_: &Bound<'_, LoopCore>, fd: RawFd, data: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
    let py = loop_.py();
    loop_.get().check_closed(py)?;
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
