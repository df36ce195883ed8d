//! The pipe transports' native cores: the read end (`ReadPipeCore`) and the
//! write end (`WritePipeCore`) of pipes, FIFOs, character devices and
//! sockets used as pipes (`connect_read_pipe` / `connect_write_pipe`, and the
//! standard streams of child processes).
//!
//! Reads, writes, the write buffer, flow control and the close state machine
//! live here; `ferroloop._pipes.ReadPipeTransport` / `WritePipeTransport`
//! (real `asyncio.ReadTransport` / `asyncio.WriteTransport` subclasses) wrap
//! them and keep the once-per-pipe and error-reporting parts in Python. The
//! contract is asyncio's `_UnixReadPipeTransport` / `_UnixWritePipeTransport`:
//! `os.read` / `os.write` semantics, the same callback order, the same
//! messages. One deliberate difference: `connection_lost` is scheduled once
//! per transport even when a second close path runs (`abort()` after
//! `close()`), where asyncio would call it again on a protocol it dropped.

use crate::loop_core::event_loop::LoopCore;
use crate::transports::flow_control::FlowControl;
use crate::loop_core::gil_cell::GilCell;
use crate::loop_core::handle::{is_fatal, Handle, NativeCallback};
use crate::loop_core::loop_metrics::TransportKind;
use crate::transports::transport_core::{ReadControl, WriteFlow};
use crate::io::poller::{READABLE, WRITABLE};
use crate::io::read_bytes::ReadBytes;
use crate::io::sock_io::{outcome, read_sized, Attempt, HeldBuffer};
use pyo3::exceptions::{PyAssertionError, PyBrokenPipeError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};
use pyo3::{PyTraverseError, PyVisit};
use std::os::fd::RawFd;

/// asyncio's `_UnixReadPipeTransport.max_size`.
const MAX_SIZE: usize = 256 * 1024;
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;
/// The kernel's default pipe capacity.
const DEFAULT_PIPE_SIZE: usize = 64 * 1024;

/// `os.read(fd, size)`: bytes (empty at end of file), or not ready.
fn read_bytes(py: Python<'_>, fd: RawFd, size: usize) -> Attempt<ReadBytes> {
    read_sized(py, fd, size, true, |buf, len| unsafe { libc::read(fd, buf, len) })
}

/// `os.write(fd, data)`: how much went out, or not ready.
fn write_some(py: Python<'_>, fd: RawFd, data: &[u8]) -> Attempt<usize> {
    outcome(py, unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) })
}

/// Pending writes of ≥ this size from an immutable `bytes` are kept by
/// reference instead of copied.
const SHARE_MIN: usize = 8 * 1024;
/// Small pending writes are appended to the last chunk while it is smaller.
const COALESCE_MAX: usize = 64 * 1024;
/// Chunks handed to one `writev`.
const MAX_IOV: usize = 64;

/// Pending bytes of a write buffer: our own copy, or a stretch of an
/// immutable `bytes` object we hold (its data never moves or changes).
enum Chunk {
    Owned(Vec<u8>),
    Shared { _obj: Py<PyAny>, ptr: *const u8, len: usize },
}

// SAFETY: the pointer is into a bytes object the chunk keeps alive, read only
// with the GIL held.
unsafe impl Send for Chunk {}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared { ptr, len, .. } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
        }
    }
}

/// The write buffer: chunks in order, the first one sent up to `head`.
#[derive(Default)]
struct WriteQueue {
    chunks: std::collections::VecDeque<Chunk>,
    head: usize,
    len: usize,
}

impl WriteQueue {
    fn len(&self) -> usize {
        self.len
    }

    fn push_copy(&mut self, data: &[u8]) {
        self.len += data.len();
        if let Some(Chunk::Owned(v)) = self.chunks.back_mut() {
            if v.len() < COALESCE_MAX {
                v.extend_from_slice(data);
                return;
            }
        }
        self.chunks.push_back(Chunk::Owned(data.to_vec()));
    }

    /// Queues `rest`, the unsent tail of `data`: by reference when `data` is
    /// an immutable bytes (or a memoryview of one), else as a copy.
    fn push(&mut self, data: &Bound<'_, PyAny>, rest: &[u8]) {
        if rest.len() >= SHARE_MIN {
            if let Some(owner) = immutable_owner(data, rest) {
                self.len += rest.len();
                self.chunks.push_back(Chunk::Shared { _obj: owner, ptr: rest.as_ptr(), len: rest.len() });
                return;
            }
        }
        self.push_copy(rest);
    }

    fn iovecs(&self, out: &mut [libc::iovec; MAX_IOV]) -> usize {
        let mut n = 0;
        for (i, c) in self.chunks.iter().take(MAX_IOV).enumerate() {
            let b = if i == 0 { &c.bytes()[self.head..] } else { c.bytes() };
            out[n] = libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() };
            n += 1;
        }
        n
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else { break };
            let left = front.bytes().len() - self.head;
            if n < left {
                self.head += n;
                return;
            }
            n -= left;
            self.head = 0;
            self.chunks.pop_front();
        }
        if self.chunks.is_empty() {
            self.head = 0;
        }
    }

    fn clear(&mut self) -> std::collections::VecDeque<Chunk> {
        self.head = 0;
        self.len = 0;
        std::mem::take(&mut self.chunks)
    }
}

/// The object that owns `rest` if it is immutable bytes data: `data` itself
/// when it is a bytes, or the bytes a memoryview `data` looks into.
fn immutable_owner(data: &Bound<'_, PyAny>, rest: &[u8]) -> Option<Py<PyAny>> {
    let owner = if data.is_exact_instance_of::<PyBytes>() {
        data.clone()
    } else if data.is_exact_instance_of::<PyMemoryView>() {
        let obj = data.getattr("obj").ok()?;
        if !obj.is_exact_instance_of::<PyBytes>() {
            return None;
        }
        obj
    } else {
        return None;
    };
    let whole = owner.cast::<PyBytes>().ok()?.as_bytes();
    let (start, end) = (whole.as_ptr() as usize, whole.as_ptr() as usize + whole.len());
    let (p, q) = (rest.as_ptr() as usize, rest.as_ptr() as usize + rest.len());
    (start <= p && q <= end).then(|| owner.unbind())
}

/// `writev` of what the queue holds: how much went out, or not ready.
fn write_queue(py: Python<'_>, fd: RawFd, q: &WriteQueue) -> Attempt<usize> {
    let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_IOV];
    let n = q.iovecs(&mut iov);
    outcome(py, unsafe { libc::writev(fd, iov.as_ptr(), n as libc::c_int) })
}

/// Pipes to a child grow to this when they fill up (see `_allow_growth`).
const GROWN_PIPE_SIZE: libc::c_int = 256 * 1024;

fn grow_pipe(fd: RawFd) {
    // Best effort: refused past the user's pipe limits, which is fine.
    unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, GROWN_PIPE_SIZE) };
}

macro_rules! field {
    ($this:expr, $py:expr, $f:ident) => {
        $this.st.with($py, |s| s.$f.as_ref().map(|x| x.clone_ref($py)))
    };
}

/// Makes `handle` the fd's watcher in `dir` (or takes it off), remembering
/// whether it is on so the loop is asked only when that changes.
fn set_watch(loop_: &Bound<'_, LoopCore>, fd: RawFd, dir: u8, on: bool, registered: &GilCell<bool>, handle: Option<Py<Handle>>) -> PyResult<()> {
    let py = loop_.py();
    if registered.get(py) == on {
        return Ok(());
    }
    if on {
        let Some(handle) = handle else { return Ok(()) };
        LoopCore::watch(loop_, fd, dir, handle)?;
    } else {
        // Our handle is reused, so it is dropped here, not cancelled.
        drop(loop_.get().take_watch(py, fd, dir));
    }
    registered.set(py, on);
    Ok(())
}

// -- the read end ----------------------------------------------------------------

#[derive(Default)]
struct ReadState {
    pipe: Option<Py<PyAny>>,
    transport: Option<Py<PyAny>>,
    protocol: Option<Py<PyAny>>,
    reader: Option<Py<Handle>>,
    closing: bool,
    paused: bool,
    lost_scheduled: bool,
}

#[pyclass(frozen, module = "ferroloop._ferroloop")]
pub struct ReadPipeCore {
    loop_: Py<LoopCore>,
    fd: RawFd,
    max_size: usize,
    /// May enlarge the pipe once when a read finds it full.
    may_grow: GilCell<bool>,
    reading: GilCell<bool>,
    st: GilCell<ReadState>,
}

/// The reader callback of a read pipe.
#[pyclass(frozen, module = "ferroloop._ferroloop")]
struct ReadPipeEvent {
    core: Py<ReadPipeCore>,
}

impl NativeCallback for ReadPipeEvent {
    fn fire(&self, py: Python<'_>) -> PyResult<()> {
        self.__call__(py)
    }
}

#[pymethods]
impl ReadPipeEvent {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        ReadPipeCore::read_ready(self.core.bind(py))
    }

    #[getter]
    fn __qualname__(&self) -> &'static str {
        "ReadPipeTransport._read_ready"
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.core)
    }
}

impl ReadPipeCore {
    fn transport<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        field!(self, py, transport).map(|t| t.into_bound(py))
    }

    fn watch(slf: &Bound<'_, Self>, on: bool) -> PyResult<()> {
        let this = slf.get();
        let py = slf.py();
        set_watch(this.loop_.bind(py), this.fd, READABLE, on, &this.reading, field!(this, py, reader))
    }

    fn read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !this.reading.get(py) {
            // Queued in this iteration before reading stopped (asyncio
            // cancels the handle on remove_reader).
            return Ok(());
        }
        match read_bytes(py, this.fd, this.max_size) {
            Attempt::NotReady => Ok(()),
            Attempt::Failed(e) => match this.transport(py) {
                Some(t) => t.call_method1("_fatal_error", (e.value(py), "Fatal read error on pipe transport")).map(drop),
                None => Ok(()),
            },
            Attempt::Done(data) => {
                let got = data.len();
                if got >= DEFAULT_PIPE_SIZE && this.may_grow.get(py) {
                    // The child filled the pipe: let it write more at a time.
                    this.may_grow.set(py, false);
                    grow_pipe(this.fd);
                }
                if got > 0 {
                    this.loop_.get().count_bytes(py, TransportKind::Pipe, got, 0);
                    return data.deliver(py, field!(this, py, protocol));
                }
                // End of file.
                let Some(t) = this.transport(py) else { return Ok(()) };
                if this.loop_.get().debug(py) {
                    t.call_method1("_log_info", ("%r was closed by peer",))?;
                }
                this.st.with(py, |s| s.closing = true);
                Self::watch(slf, false)?;
                let loop_ = this.loop_.bind(py);
                if let Some(p) = field!(this, py, protocol) {
                    loop_.call_method1("call_soon", (p.bind(py).getattr("eof_received")?,))?;
                }
                Self::schedule_connection_lost(slf, py.None())
            }
        }
    }

    fn schedule_connection_lost(slf: &Bound<'_, Self>, exc: Py<PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.st.with(py, |s| std::mem::replace(&mut s.lost_scheduled, true)) {
            return Ok(());
        }
        let Some(t) = this.transport(py) else { return Ok(()) };
        this.loop_.bind(py).call_method1("call_soon", (t.getattr("_call_connection_lost")?, exc))?;
        Ok(())
    }

    fn close_with(slf: &Bound<'_, Self>, exc: Py<PyAny>) -> PyResult<()> {
        slf.get().st.with(slf.py(), |s| s.closing = true);
        Self::watch(slf, false)?;
        Self::schedule_connection_lost(slf, exc)
    }
}

crate::reading_methods!(ReadPipeCore);

impl ReadControl for ReadPipeCore {
    fn read_flags(&self, py: Python<'_>) -> (bool, bool) {
        self.st.with(py, |s| (s.closing, s.paused))
    }

    fn set_paused(&self, py: Python<'_>, paused: bool) {
        self.st.with(py, |s| s.paused = paused)
    }

    fn watch_reads(slf: &Bound<'_, Self>, on: bool) -> PyResult<()> {
        Self::watch(slf, on)
    }

    fn event_loop(&self) -> &Py<LoopCore> {
        &self.loop_
    }

    fn py_transport<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.transport(py)
    }
}

#[pymethods]
impl ReadPipeCore {

    fn is_closing(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.closing)
    }

    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        if slf.get().st.with(slf.py(), |s| s.closing) {
            return Ok(());
        }
        Self::close_with(slf, slf.py().None())
    }

    /// asyncio's `_close(exc)`: stop reading, connection_lost(exc) soon.
    fn _close(slf: &Bound<'_, Self>, exc: Py<PyAny>) -> PyResult<()> {
        Self::close_with(slf, exc)
    }

    /// As `WritePipeCore._allow_growth`, from the reading end.
    fn _allow_growth(&self, py: Python<'_>) {
        self.may_grow.set(py, true);
    }

    fn set_protocol(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) {
        let old = self.st.with(py, |s| s.protocol.replace(protocol.clone().unbind()));
        drop(old);
    }

    fn get_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        field!(self, py, protocol)
    }

    /// Ends the pipe's life: returns (pipe, protocol) and lets go of the rest.
    fn _detach(&self, py: Python<'_>) -> (Option<Py<PyAny>>, Option<Py<PyAny>>) {
        let (out, rest) = self.st.with(py, |s| {
            ((s.pipe.take(), s.protocol.take()), (s.transport.take(), s.reader.take()))
        });
        drop(rest);
        out
    }

    #[getter]
    fn _closing(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.closing)
    }

    #[getter]
    fn _paused(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.paused)
    }

    #[getter]
    fn _polling(&self, py: Python<'_>) -> bool {
        self.reading.get(py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        // SAFETY: called by the garbage collector only.
        let s = unsafe { self.st.peek_for_gc() };
        for f in [&s.pipe, &s.transport, &s.protocol] {
            visit.call(f)?;
        }
        visit.call(&s.reader)
    }

    fn __clear__(&self) {
        Python::attach(|py| drop(self.st.with(py, std::mem::take)))
    }
}

#[pyfunction]
#[pyo3(signature = (loop_, pipe, fd, transport, protocol, max_size=MAX_SIZE))]
fn read_pipe_core(
    loop_: &Bound<'_, LoopCore>,
    pipe: &Bound<'_, PyAny>,
    fd: RawFd,
    transport: &Bound<'_, PyAny>,
    protocol: &Bound<'_, PyAny>,
    max_size: usize,
) -> PyResult<Py<ReadPipeCore>> {
    let py = loop_.py();
    let state = ReadState { pipe: Some(pipe.clone().unbind()), transport: Some(transport.clone().unbind()), ..ReadState::default() };
    let core = Py::new(
        py,
        ReadPipeCore {
            loop_: loop_.clone().unbind(),
            fd,
            max_size: max_size.max(1),
            may_grow: GilCell::new(false),
            reading: GilCell::new(false),
            st: GilCell::new(state),
        },
    )?;
    core.get().set_protocol(py, protocol);
    let cb = Py::new(py, ReadPipeEvent { core: core.clone_ref(py) })?;
    let reader = Handle::new_native_in_context(py, loop_.clone().unbind(), cb, Handle::copy_current_context(py)?)?;
    core.get().st.with(py, |s| s.reader = Some(reader));
    Ok(core)
}

// -- the write end ---------------------------------------------------------------

#[derive(Default)]
struct WriteState {
    pipe: Option<Py<PyAny>>,
    transport: Option<Py<PyAny>>,
    protocol: Option<Py<PyAny>>,
    /// Watches the fd for readability: the reader went away.
    peer_watch: Option<Py<Handle>>,
    writer: Option<Py<Handle>>,
    buf: WriteQueue,
    conn_lost: u32,
    closing: bool,
    flow: FlowControl,
    lost_scheduled: bool,
}

impl WriteState {
    fn pending(&self) -> usize {
        self.buf.len()
    }

    fn consume(&mut self, n: usize) {
        self.buf.consume(n);
    }

    fn clear_buffer(&mut self) -> std::collections::VecDeque<Chunk> {
        self.buf.clear()
    }
}

#[pyclass(frozen, module = "ferroloop._ferroloop")]
pub struct WritePipeCore {
    loop_: Py<LoopCore>,
    fd: RawFd,
    /// May enlarge the pipe once when it fills (a pipe to a child of ours).
    may_grow: GilCell<bool>,
    watching_peer: GilCell<bool>,
    writing: GilCell<bool>,
    st: GilCell<WriteState>,
}

/// The writer callback of a write pipe, or (`peer`) its reader callback,
/// which fires when the read end is closed.
#[pyclass(frozen, module = "ferroloop._ferroloop")]
struct WritePipeEvent {
    core: Py<WritePipeCore>,
    peer: bool,
}

impl NativeCallback for WritePipeEvent {
    fn fire(&self, py: Python<'_>) -> PyResult<()> {
        self.__call__(py)
    }
}

#[pymethods]
impl WritePipeEvent {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let core = self.core.bind(py);
        if self.peer {
            WritePipeCore::peer_closed(core)
        } else {
            WritePipeCore::write_ready(core)
        }
    }

    #[getter]
    fn __qualname__(&self) -> &'static str {
        if self.peer {
            "WritePipeTransport._read_ready"
        } else {
            "WritePipeTransport._write_ready"
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.core)
    }
}

impl WritePipeCore {
    /// Enlarges the pipe if allowed and not done yet; true if it was tried.
    fn try_grow(&self, py: Python<'_>) -> bool {
        if !self.may_grow.get(py) {
            return false;
        }
        self.may_grow.set(py, false);
        grow_pipe(self.fd);
        true
    }

    fn transport<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        field!(self, py, transport).map(|t| t.into_bound(py))
    }

    fn watch_writable(slf: &Bound<'_, Self>, on: bool) -> PyResult<()> {
        let this = slf.get();
        let py = slf.py();
        set_watch(this.loop_.bind(py), this.fd, WRITABLE, on, &this.writing, field!(this, py, writer))
    }

    fn watch_peer(slf: &Bound<'_, Self>, on: bool) -> PyResult<()> {
        let this = slf.get();
        let py = slf.py();
        set_watch(this.loop_.bind(py), this.fd, READABLE, on, &this.watching_peer, field!(this, py, peer_watch))
    }

    fn fatal(&self, py: Python<'_>, err: PyErr, message: &str) -> PyResult<()> {
        if is_fatal(py, &err) {
            return Err(err);
        }
        match self.transport(py) {
            Some(t) => t.call_method1("_fatal_error", (err.value(py), message)).map(drop),
            None => Ok(()),
        }
    }

    fn write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !this.writing.get(py) {
            // Queued in this iteration before the writer was taken off.
            return Ok(());
        }
        let outcome = this.st.with(py, |s| write_queue(py, this.fd, &s.buf));
        match outcome {
            Attempt::NotReady => Ok(()),
            Attempt::Failed(e) => {
                let dropped = this.st.with(py, |s| {
                    s.conn_lost += 1;
                    s.clear_buffer()
                });
                drop(dropped);
                Self::watch_writable(slf, false)?;
                this.fatal(py, e, "Fatal write error on pipe transport")
            }
            Attempt::Done(n) => {
                this.loop_.get().count_bytes(py, TransportKind::Pipe, 0, n);
                if this.st.with(py, |s| {
                    s.consume(n);
                    s.pending() > 0
                }) {
                    return Ok(());
                }
                Self::watch_writable(slf, false)?;
                Self::maybe_resume_protocol(slf)?; // may write more
                if this.st.with(py, |s| s.closing && s.pending() == 0 && !s.lost_scheduled) {
                    Self::watch_peer(slf, false)?;
                    this.st.with(py, |s| s.lost_scheduled = true);
                    if let Some(t) = this.transport(py) {
                        t.call_method1("_call_connection_lost", (py.None(),))?;
                    }
                }
                Ok(())
            }
        }
    }

    fn peer_closed(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !this.watching_peer.get(py) {
            return Ok(());
        }
        if this.loop_.get().debug(py) {
            if let Some(t) = this.transport(py) {
                t.call_method1("_log_info", ("%r was closed by peer",))?;
            }
        }
        let exc = if this.st.with(py, |s| s.pending() > 0) {
            PyBrokenPipeError::new_err(()).into_value(py).into_any()
        } else {
            py.None()
        };
        Self::close_with(slf, exc)
    }

    fn schedule_connection_lost(slf: &Bound<'_, Self>, exc: Py<PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.st.with(py, |s| std::mem::replace(&mut s.lost_scheduled, true)) {
            return Ok(());
        }
        let Some(t) = this.transport(py) else { return Ok(()) };
        this.loop_.bind(py).call_method1("call_soon", (t.getattr("_call_connection_lost")?, exc))?;
        Ok(())
    }

    /// asyncio's `_close(exc)`: drop what is buffered, stop watching,
    /// connection_lost(exc) soon.
    fn close_with(slf: &Bound<'_, Self>, exc: Py<PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (had_buffer, dropped) = this.st.with(py, |s| {
            s.closing = true;
            (s.pending() > 0, s.clear_buffer())
        });
        drop(dropped);
        if had_buffer {
            Self::watch_writable(slf, false)?;
        }
        Self::watch_peer(slf, false)?;
        Self::schedule_connection_lost(slf, exc)
    }

}

crate::write_limit_methods!(WritePipeCore);

impl WriteFlow for WritePipeCore {
    fn with_flow<R>(&self, py: Python<'_>, f: impl FnOnce(&mut FlowControl, usize) -> R) -> R {
        self.st.with(py, |s| {
            let buffered = s.pending();
            f(&mut s.flow, buffered)
        })
    }

    fn protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        field!(self, py, protocol)
    }

    fn flow_transport<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.transport(py)
    }
}

#[pymethods]
impl WritePipeCore {
    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !(data.is_instance_of::<PyBytes>() || data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>()) {
            // asyncio asserts the type.
            return Err(PyAssertionError::new_err(data.repr()?.unbind()));
        }
        let held = HeldBuffer::get(data)?;
        let bytes = held.bytes();
        if bytes.is_empty() {
            return Ok(());
        }
        let (lost, closing, pending) = this.st.with(py, |s| (s.conn_lost, s.closing, s.pending()));
        if lost > 0 || closing {
            if lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES {
                // asyncio's logger: the transport may have let go of its wrapper.
                py.import("asyncio.log")?.getattr("logger")?.call_method1("warning", ("pipe closed by peer or os.write(pipe, data) raised exception.",))?;
            }
            this.st.with(py, |s| s.conn_lost += 1);
            return Ok(());
        }
        let mut rest = bytes;
        if pending == 0 {
            // Nothing queued: try the pipe at once.
            let mut tries = 0;
            loop {
                match write_some(py, this.fd, rest) {
                    Attempt::Done(n) => {
                        this.loop_.get().count_bytes(py, TransportKind::Pipe, 0, n);
                        if n == rest.len() {
                            return Ok(());
                        }
                        rest = &rest[n..];
                    }
                    Attempt::NotReady => {}
                    Attempt::Failed(e) => {
                        this.st.with(py, |s| s.conn_lost += 1);
                        return this.fatal(py, e, "Fatal write error on pipe transport");
                    }
                }
                // The pipe is full: a child's pipe may grow once, then the
                // rest is tried again at once.
                tries += 1;
                if tries > 1 || !this.try_grow(py) {
                    break;
                }
            }
            Self::watch_writable(slf, true)?;
        }
        this.st.with(py, |s| s.buf.push(data, rest));
        Self::maybe_pause_protocol(slf)
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    fn write_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let now = this.st.with(py, |s| {
            if s.closing {
                return None;
            }
            s.closing = true;
            Some(s.pending() == 0)
        });
        if now == Some(true) {
            Self::watch_peer(slf, false)?;
            Self::schedule_connection_lost(slf, py.None())?;
        }
        Ok(())
    }

    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let open = slf.get().st.with(slf.py(), |s| s.pipe.is_some() && !s.closing);
        if open {
            // write_eof is all a write pipe needs to close.
            Self::write_eof(slf)?;
        }
        Ok(())
    }

    fn abort(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::close_with(slf, slf.py().None())
    }

    fn _close(slf: &Bound<'_, Self>, exc: Py<PyAny>) -> PyResult<()> {
        Self::close_with(slf, exc)
    }

    fn is_closing(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.closing)
    }

    fn get_write_buffer_size(&self, py: Python<'_>) -> usize {
        self.st.with(py, |s| s.pending())
    }

    /// Lets the pipe grow to 256 KiB the first time it fills: set for the
    /// pipes of child processes, which the loop made and owns. Fewer, larger
    /// writes and wake-ups when a child streams data; pipes that never fill
    /// keep the kernel's default size (and the user's pipe budget).
    fn _allow_growth(&self, py: Python<'_>) {
        self.may_grow.set(py, true);
    }

    /// Watches for the reader going away once `connection_made` has run.
    fn _start_peer_watch(slf: &Bound<'_, Self>) -> PyResult<()> {
        if slf.get().st.with(slf.py(), |s| s.lost_scheduled || s.pipe.is_none()) {
            return Ok(());
        }
        Self::watch_peer(slf, true)
    }

    fn set_protocol(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) {
        let old = self.st.with(py, |s| s.protocol.replace(protocol.clone().unbind()));
        drop(old);
    }

    fn get_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        field!(self, py, protocol)
    }

    /// Ends the pipe's life: returns (pipe, protocol) and lets go of the rest.
    fn _detach(&self, py: Python<'_>) -> (Option<Py<PyAny>>, Option<Py<PyAny>>) {
        let (out, rest) = self.st.with(py, |s| {
            ((s.pipe.take(), s.protocol.take()), (s.transport.take(), s.peer_watch.take(), s.writer.take(), s.clear_buffer()))
        });
        drop(rest);
        out
    }

    #[getter]
    fn _closing(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.closing)
    }

    #[getter]
    fn _conn_lost(&self, py: Python<'_>) -> u32 {
        self.st.with(py, |s| s.conn_lost)
    }

    #[getter]
    fn _polling(&self, py: Python<'_>) -> bool {
        self.writing.get(py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        // SAFETY: called by the garbage collector only.
        let s = unsafe { self.st.peek_for_gc() };
        for f in [&s.pipe, &s.transport, &s.protocol] {
            visit.call(f)?;
        }
        visit.call(&s.peer_watch)?;
        visit.call(&s.writer)
    }

    fn __clear__(&self) {
        Python::attach(|py| drop(self.st.with(py, std::mem::take)))
    }
}

#[pyfunction]
fn write_pipe_core(
    loop_: &Bound<'_, LoopCore>,
    pipe: &Bound<'_, PyAny>,
    fd: RawFd,
    transport: &Bound<'_, PyAny>,
    protocol: &Bound<'_, PyAny>,
) -> PyResult<Py<WritePipeCore>> {
    let py = loop_.py();
    let state = WriteState {
        pipe: Some(pipe.clone().unbind()),
        transport: Some(transport.clone().unbind()),
        protocol: Some(protocol.clone().unbind()),
        flow: FlowControl::default(),
        ..WriteState::default()
    };
    let core = Py::new(
        py,
        WritePipeCore {
            loop_: loop_.clone().unbind(),
            fd,
            may_grow: GilCell::new(false),
            watching_peer: GilCell::new(false),
            writing: GilCell::new(false),
            st: GilCell::new(state),
        },
    )?;
    let context = Handle::copy_current_context(py)?;
    let event = |peer| -> PyResult<Py<Handle>> {
        let cb = Py::new(py, WritePipeEvent { core: core.clone_ref(py), peer })?;
        Handle::new_native_in_context(py, loop_.clone().unbind(), cb, context.clone_ref(py))
    };
    let (peer_watch, writer) = (event(true)?, event(false)?);
    core.get().st.with(py, |s| {
        s.peer_watch = Some(peer_watch);
        s.writer = Some(writer);
    });
    Ok(core)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ReadPipeCore>()?;
    m.add_class::<WritePipeCore>()?;
    m.add_function(wrap_pyfunction!(read_pipe_core, m)?)?;
    m.add_function(wrap_pyfunction!(write_pipe_core, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(q: &WriteQueue) -> Vec<u8> {
        let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_IOV];
        let n = q.iovecs(&mut iov);
        let mut out = Vec::new();
        for v in &iov[..n] {
            out.extend_from_slice(unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) });
        }
        out
    }

    #[test]
    fn small_writes_coalesce_and_consume_across_chunks() {
        let mut q = WriteQueue::default();
        q.push_copy(b"hello ");
        q.push_copy(b"world");
        assert_eq!(q.chunks.len(), 1);
        let big = vec![7u8; COALESCE_MAX];
        q.push_copy(&big);
        q.push_copy(b"tail");
        assert_eq!(q.chunks.len(), 2);
        assert_eq!(q.len(), 11 + COALESCE_MAX + 4);
        q.consume(3);
        assert_eq!(&queued(&q)[..8], b"lo world");
        q.consume(8 + COALESCE_MAX);
        assert_eq!(queued(&q), b"tail");
        assert_eq!(q.len(), 4);
        q.consume(4);
        assert_eq!(q.len(), 0);
        assert!(q.chunks.is_empty() && q.head == 0);
    }

    #[test]
    fn iovecs_stop_at_the_limit_and_clear_empties() {
        let mut q = WriteQueue::default();
        for i in 0..(MAX_IOV + 5) {
            q.chunks.push_back(Chunk::Owned(vec![i as u8; 3]));
            q.len += 3;
        }
        let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_IOV];
        assert_eq!(q.iovecs(&mut iov), MAX_IOV);
        q.consume(4);
        assert_eq!(queued(&q)[..2], [1, 1]);
        let dropped = q.clear();
        assert_eq!(dropped.len(), MAX_IOV + 4);
        assert_eq!(q.len(), 0);
    }
}
