//! The pipe transports' native cores: the read end (`ReadPipeCore`) and the
//! write end (`WritePipeCore`) of pipes, FIFOs, character devices and
//! sockets used as pipes (`connect_read_pipe` / `connect_write_pipe`, and the
//! standard streams of child processes).
//!
//! Reads, writes, the write buffer, flow control and the close state machine
//! live here; `ferroloop.pipes.ReadPipeTransport` / `WritePipeTransport`
//! (real `asyncio.ReadTransport` / `asyncio.WriteTransport` subclasses) wrap
//! them and keep the once-per-pipe and error-reporting parts in Python. The
//! contract is asyncio's `_UnixReadPipeTransport` / `_UnixWritePipeTransport`:
//! `os.read` / `os.write` semantics, the same callback order, the same
//! messages. One deliberate difference: `connection_lost` is scheduled once
//! per transport even when a second close path runs (`abort()` after
//! `close()`), where asyncio would call it again on a protocol it dropped.

use crate::event_loop::LoopCore;
use crate::gil_cell::GilCell;
use crate::handle::Handle;
use crate::os_error;
use crate::poller::{READABLE, WRITABLE};
use crate::sock_io::{errno, would_block, Attempt, HeldBuffer};
use pyo3::exceptions::{PyAssertionError, PyBrokenPipeError, PyKeyboardInterrupt, PySystemExit, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};
use pyo3::{PyTraverseError, PyVisit};
use std::os::fd::RawFd;

/// asyncio's `_UnixReadPipeTransport.max_size`.
const MAX_SIZE: usize = 256 * 1024;
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;
const DEFAULT_HIGH_WATER: usize = 64 * 1024;

fn is_fatal(py: Python<'_>, e: &PyErr) -> bool {
    e.is_instance_of::<PySystemExit>(py) || e.is_instance_of::<PyKeyboardInterrupt>(py)
}

thread_local! {
    /// Reads land here and are copied into an exactly sized bytes: a fresh
    /// 256 KiB block per read would be mapped and faulted in every time.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `os.read(fd, size)`: bytes (empty at end of file), or not ready.
fn read_bytes(py: Python<'_>, fd: RawFd, size: usize) -> Attempt<Py<PyAny>> {
    READ_BUF.with(|b| {
        let mut buf = b.borrow_mut();
        if buf.len() < size {
            buf.resize(size, 0);
        }
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), size) };
        if n < 0 {
            let e = errno();
            return if would_block(e) { Attempt::NotReady } else { Attempt::Failed(os_error::from_errno(py, e)) };
        }
        Attempt::Done(PyBytes::new(py, &buf[..n as usize]).into_any().unbind())
    })
}

/// `os.write(fd, data)`: how much went out, or not ready.
fn write_some(py: Python<'_>, fd: RawFd, data: &[u8]) -> Attempt<usize> {
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    if n >= 0 {
        return Attempt::Done(n as usize);
    }
    let e = errno();
    if would_block(e) {
        Attempt::NotReady
    } else {
        Attempt::Failed(os_error::from_errno(py, e))
    }
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
    data_received: Option<Py<PyAny>>,
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
    reading: GilCell<bool>,
    st: GilCell<ReadState>,
}

/// The reader callback of a read pipe.
#[pyclass(frozen, module = "ferroloop._ferroloop")]
struct ReadPipeEvent {
    core: Py<ReadPipeCore>,
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

    fn is_reading_now(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| !s.closing && !s.paused)
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
                if data.bind(py).len()? > 0 {
                    return match field!(this, py, data_received) {
                        Some(cb) => cb.call1(py, (data,)).map(drop),
                        None => match field!(this, py, protocol) {
                            Some(p) => p.call_method1(py, "data_received", (data,)).map(drop),
                            None => Ok(()),
                        },
                    };
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

#[pymethods]
impl ReadPipeCore {
    fn is_reading(&self, py: Python<'_>) -> bool {
        self.is_reading_now(py)
    }

    fn is_closing(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.closing)
    }

    fn pause_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !this.is_reading_now(py) {
            return Ok(());
        }
        this.st.with(py, |s| s.paused = true);
        Self::watch(slf, false)?;
        if this.loop_.get().debug(py) {
            if let Some(t) = this.transport(py) {
                t.call_method1("_log_debug", ("%r pauses reading",))?;
            }
        }
        Ok(())
    }

    fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.st.with(py, |s| s.closing || !s.paused) {
            return Ok(());
        }
        this.st.with(py, |s| s.paused = false);
        Self::watch(slf, true)?;
        if this.loop_.get().debug(py) {
            if let Some(t) = this.transport(py) {
                t.call_method1("_log_debug", ("%r resumes reading",))?;
            }
        }
        Ok(())
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

    /// Starts reading once `connection_made` has run (scheduled after it).
    fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        if slf.get().is_reading_now(slf.py()) {
            Self::watch(slf, true)?;
        }
        Ok(())
    }

    fn set_protocol(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) {
        let cb = protocol.getattr("data_received").ok().map(Bound::unbind);
        let old = self.st.with(py, |s| (s.protocol.replace(protocol.clone().unbind()), std::mem::replace(&mut s.data_received, cb)));
        drop(old);
    }

    fn get_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        field!(self, py, protocol)
    }

    /// Ends the pipe's life: returns (pipe, protocol) and lets go of the rest.
    fn _detach(&self, py: Python<'_>) -> (Option<Py<PyAny>>, Option<Py<PyAny>>) {
        let (out, rest) = self.st.with(py, |s| {
            ((s.pipe.take(), s.protocol.take()), (s.transport.take(), s.data_received.take(), s.reader.take()))
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
        for f in [&s.pipe, &s.transport, &s.protocol, &s.data_received] {
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
        ReadPipeCore { loop_: loop_.clone().unbind(), fd, max_size: max_size.max(1), reading: GilCell::new(false), st: GilCell::new(state) },
    )?;
    core.get().set_protocol(py, protocol);
    let cb = Py::new(py, ReadPipeEvent { core: core.clone_ref(py) })?;
    let reader = Handle::new_native(py, loop_.clone().unbind(), cb.into_any())?;
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
    /// Unsent bytes are `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
    conn_lost: u32,
    closing: bool,
    protocol_paused: bool,
    high: usize,
    low: usize,
    lost_scheduled: bool,
}

impl WriteState {
    fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    fn clear_buffer(&mut self) {
        self.buf = Vec::new();
        self.start = 0;
    }
}

#[pyclass(frozen, module = "ferroloop._ferroloop")]
pub struct WritePipeCore {
    loop_: Py<LoopCore>,
    fd: RawFd,
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
        let outcome = this.st.with(py, |s| write_some(py, this.fd, &s.buf[s.start..]));
        match outcome {
            Attempt::NotReady => Ok(()),
            Attempt::Failed(e) => {
                this.st.with(py, |s| {
                    s.clear_buffer();
                    s.conn_lost += 1;
                });
                Self::watch_writable(slf, false)?;
                this.fatal(py, e, "Fatal write error on pipe transport")
            }
            Attempt::Done(n) => {
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
        let had_buffer = this.st.with(py, |s| {
            s.closing = true;
            let had = s.pending() > 0;
            s.clear_buffer();
            had
        });
        if had_buffer {
            Self::watch_writable(slf, false)?;
        }
        Self::watch_peer(slf, false)?;
        Self::schedule_connection_lost(slf, exc)
    }

    fn protocol_flow_call(&self, py: Python<'_>, method: &str) -> PyResult<()> {
        let Some(protocol) = field!(self, py, protocol) else { return Ok(()) };
        if let Err(e) = protocol.call_method0(py, method) {
            if is_fatal(py, &e) {
                return Err(e);
            }
            if let Some(t) = self.transport(py) {
                t.call_method1("_protocol_call_failed", (format!("protocol.{}() failed", method), e.value(py)))?;
            }
        }
        Ok(())
    }

    fn maybe_pause_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let pause = this.st.with(py, |s| {
            let pause = s.pending() > s.high && !s.protocol_paused;
            if pause {
                s.protocol_paused = true;
            }
            pause
        });
        if pause {
            this.protocol_flow_call(py, "pause_writing")?;
        }
        Ok(())
    }

    fn maybe_resume_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let resume = this.st.with(py, |s| {
            let resume = s.protocol_paused && s.pending() <= s.low;
            if resume {
                s.protocol_paused = false;
            }
            resume
        });
        if resume {
            this.protocol_flow_call(py, "resume_writing")?;
        }
        Ok(())
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
            match write_some(py, this.fd, bytes) {
                Attempt::Done(n) if n == bytes.len() => return Ok(()),
                Attempt::Done(n) => rest = &bytes[n..],
                Attempt::NotReady => {}
                Attempt::Failed(e) => {
                    this.st.with(py, |s| s.conn_lost += 1);
                    return this.fatal(py, e, "Fatal write error on pipe transport");
                }
            }
            Self::watch_writable(slf, true)?;
        }
        this.st.with(py, |s| s.buf.extend_from_slice(rest));
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

    #[pyo3(signature = (high=None, low=None))]
    fn set_write_buffer_limits(slf: &Bound<'_, Self>, high: Option<Bound<'_, PyAny>>, low: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let as_int = |v: &Option<Bound<'_, PyAny>>| -> PyResult<Option<i64>> {
            match v {
                Some(x) if !x.is_none() => Ok(Some(x.extract()?)),
                _ => Ok(None),
            }
        };
        let (h, l) = (as_int(&high)?, as_int(&low)?);
        let high = match (h, l) {
            (Some(h), _) => h,
            (None, None) => DEFAULT_HIGH_WATER as i64,
            (None, Some(l)) => 4 * l,
        };
        let low = l.unwrap_or(high / 4);
        if !(high >= low && low >= 0) {
            return Err(PyValueError::new_err(format!("high ({}) must be >= low ({}) must be >= 0", high, low)));
        }
        slf.get().st.with(py, |s| {
            s.high = high as usize;
            s.low = low as usize;
        });
        Self::maybe_pause_protocol(slf)
    }

    fn get_write_buffer_limits(&self, py: Python<'_>) -> (usize, usize) {
        self.st.with(py, |s| (s.low, s.high))
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
            s.clear_buffer();
            ((s.pipe.take(), s.protocol.take()), (s.transport.take(), s.peer_watch.take(), s.writer.take()))
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
    fn _protocol_paused(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.protocol_paused)
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
        high: DEFAULT_HIGH_WATER,
        low: DEFAULT_HIGH_WATER / 4,
        ..WriteState::default()
    };
    let core = Py::new(
        py,
        WritePipeCore {
            loop_: loop_.clone().unbind(),
            fd,
            watching_peer: GilCell::new(false),
            writing: GilCell::new(false),
            st: GilCell::new(state),
        },
    )?;
    let event = |peer| -> PyResult<Py<Handle>> {
        let cb = Py::new(py, WritePipeEvent { core: core.clone_ref(py), peer })?;
        Handle::new_native(py, loop_.clone().unbind(), cb.into_any())
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
