//! The stream transport's native core (TCP and Unix stream sockets).
//!
//! Reading, writing, the write buffer, flow control and the close/abort state
//! machine live here; `ferroloop._transports.SocketTransport` (a real
//! `asyncio.Transport` subclass) wraps it and keeps the once-per-connection
//! and error-reporting parts in Python. The contract is asyncio's
//! `_SelectorSocketTransport`: same callback order, same messages.

use crate::loop_core::fastcall::{self, FastcallArgs, FastcallMethod};
use crate::loop_core::event_loop::LoopCore;
use crate::transports::flow_control::FlowControl;
use crate::loop_core::gil_cell::GilCell;
use crate::loop_core::handle::{is_fatal, Handle, NativeCallback};
use crate::loop_core::loop_metrics::TransportKind;
use crate::transports::transport_core::{add_socket_extra, forget_transport, start_transport, Closing, ReadControl, WriteFlow};
use crate::io::os_error;
use crate::io::poller::{READABLE, WRITABLE};
use crate::io::sock_io::{read_sized, recv_with, try_recv, try_send, Attempt, HeldBuffer, DIRECT_READ_MIN};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::intern;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyMemoryView, PyType};
use pyo3::{PyTraverseError, PyVisit};
use std::ffi::CStr;
use std::os::fd::RawFd;

/// Bytes asked of each recv(): asyncio's `max_size` while reads keep filling
/// the buffer (bulk transfers, read straight into their bytes), half of it
/// otherwise (copied out of a reused buffer). Measured here: asking for
/// 256 KiB when a 100 KiB message is waiting makes the kernel's copy several
/// times slower than asking for 128 KiB, and copying 256 KiB reads halves
/// bulk throughput.
const MAX_SIZE: usize = 256 * 1024;
const SMALL_READ_SIZE: usize = 128 * 1024;
/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

static BUFFERED_PROTOCOL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

#[derive(Default)]
struct State {
    sock: Option<Py<PyAny>>,
    /// The Python `SocketTransport` protocols see.
    transport: Option<Py<PyAny>>,
    /// Its callbacks are looked up on every call, as asyncio's transports
    /// do: a protocol may rebind them on the instance or its class.
    protocol: Option<Py<PyAny>>,
    buffered: bool,
    /// The protocol when it takes bytes straight from the read buffer
    /// (ferroloop's TLS layer), fed without Python calls.
    raw_receiver: Option<(Py<PyAny>, &'static RawReceiver)>,
    protocol_connected: bool,
    empty_waiter: Option<Py<PyAny>>,
    reader: Option<Py<Handle>>,
    writer: Option<Py<Handle>>,
    /// Unsent bytes are `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
    conn_lost: u32,
    closing: bool,
    paused: bool,
    eof: bool,
    flow: FlowControl,
    reading: bool,
    writing: bool,
    read_size: usize,
    /// The last read got at least DIRECT_READ_MIN bytes: the next asks how
    /// much waits, to read it straight into its bytes.
    large: bool,
}

impl State {
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
pub struct StreamTransportCore {
    loop_: Py<LoopCore>,
    fd: RawFd,
    st: GilCell<State>,
}

/// The reader or writer callback of one transport.
#[pyclass(frozen, module = "ferroloop._ferroloop")]
struct TransportEvent {
    core: Py<StreamTransportCore>,
    writable: bool,
}

impl NativeCallback for TransportEvent {
    fn fire(&self, py: Python<'_>) -> PyResult<()> {
        self.__call__(py)
    }
}

#[pymethods]
impl TransportEvent {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let core = self.core.bind(py);
        if self.writable {
            StreamTransportCore::write_ready(core)
        } else {
            StreamTransportCore::read_ready(core)
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.core)
    }
}

macro_rules! field {
    ($this:expr, $py:expr, $f:ident) => {
        $this.st.with($py, |s| s.$f.as_ref().map(|x| x.clone_ref($py)))
    };
}

impl StreamTransportCore {
    fn transport<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        field!(self, py, transport).map(|t| t.into_bound(py))
    }

    /// Bytes this socket read and wrote, for the loop's metrics.
    #[inline]
    fn count(&self, py: Python<'_>, read: usize, written: usize) {
        self.loop_.get().count_bytes(py, TransportKind::Stream, read, written)
    }

    fn set_watch(slf: &Bound<'_, Self>, dir: u8, on: bool) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (registered, handle) = this.st.with(py, |s| {
            if dir == READABLE {
                (s.reading, s.reader.as_ref().map(|h| h.clone_ref(py)))
            } else {
                (s.writing, s.writer.as_ref().map(|h| h.clone_ref(py)))
            }
        });
        if registered == on {
            return Ok(());
        }
        if on {
            let Some(handle) = handle else { return Ok(()) };
            LoopCore::watch(this.loop_.bind(py), this.fd, dir, handle)?;
        } else {
            // Our handle is reused, so it is dropped here, not cancelled.
            drop(this.loop_.get().take_watch(py, this.fd, dir));
        }
        this.st.with(py, |s| if dir == READABLE { s.reading = on } else { s.writing = on });
        Ok(())
    }

    /// Hands an error to the Python transport (`_fatal_error`), which
    /// reports it as asyncio does and force-closes.
    fn fatal(&self, py: Python<'_>, err: PyErr, message: &str) -> PyResult<()> {
        if is_fatal(py, &err) {
            return Err(err);
        }
        match self.transport(py) {
            Some(t) => t.call_method1("_fatal_error", (err.value(py), message)).map(drop),
            None => Ok(()),
        }
    }

    fn read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (lost, buffered) = this.st.with(py, |s| (s.conn_lost, s.buffered));
        if lost > 0 {
            return Ok(());
        }
        if let Some((layer, receiver)) = this.st.with(py, |s| s.raw_receiver.as_ref().map(|(l, r)| (l.clone_ref(py), *r))) {
            return Self::read_into_layer(slf, layer.bind(py), receiver);
        }
        if buffered {
            return Self::read_into_protocol_buffer(slf);
        }
        let (size, large) = this.st.with(py, |s| (s.read_size, s.large));
        // In bulk (reads fill the buffer) the data lands straight in its
        // bytes, and so do large messages, read at their exact size; small
        // ones are copied out of the reused buffer.
        let fd = this.fd;
        let attempt = if size == MAX_SIZE {
            try_recv(py, fd, size)
        } else {
            read_sized(py, fd, size, large, |buf, len| unsafe { libc::recv(fd, buf, len, libc::MSG_DONTWAIT) })
        };
        match attempt {
            Attempt::NotReady => Ok(()),
            Attempt::Failed(e) => this.fatal(py, e, "Fatal read error on socket transport"),
            Attempt::Done(data) => {
                let got = data.len();
                if got == 0 {
                    return Self::on_eof(slf);
                }
                this.count(py, got, 0);
                this.st.with(py, |s| {
                    s.read_size = if got == size { MAX_SIZE } else { SMALL_READ_SIZE };
                    s.large = got >= DIRECT_READ_MIN;
                });
                match data.deliver(py, field!(this, py, protocol)) {
                    Ok(()) => Ok(()),
                    Err(e) => this.fatal(py, e, "Fatal error: protocol.data_received() call failed."),
                }
            }
        }
    }

    /// A `BufferedProtocol` read for a `RawReceiver` (the TLS layer): the
    /// bytes go from the reused read buffer into its incoming BIO.
    fn read_into_layer(slf: &Bound<'_, Self>, layer: &Bound<'_, PyAny>, receiver: &RawReceiver) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let fed = recv_with(py, this.fd, SMALL_READ_SIZE, |data| {
            this.count(py, data.len(), 0);
            (receiver.feed)(layer, data).map(|_| data.len())
        });
        let outcome = match fed {
            Attempt::NotReady => return Ok(()),
            Attempt::Failed(e) => return this.fatal(py, e, "Fatal read error on socket transport"),
            Attempt::Done(Ok(0)) => return Self::on_eof(slf),
            Attempt::Done(Ok(_)) => (receiver.ready)(layer),
            Attempt::Done(Err(e)) => Err(e),
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(e) => this.fatal(py, e, "Fatal error: protocol.buffer_updated() call failed."),
        }
    }

    fn read_into_protocol_buffer(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let Some(protocol) = field!(this, py, protocol) else { return Ok(()) };
        let buf = match protocol.call_method1(py, intern!(py, "get_buffer"), (-1,)).and_then(|b| {
            if b.bind(py).len()? == 0 {
                Err(PyRuntimeError::new_err("get_buffer() returned an empty buffer"))
            } else {
                Ok(b)
            }
        }) {
            Ok(b) => b,
            Err(e) => return this.fatal(py, e, "Fatal error: protocol.get_buffer() call failed."),
        };
        let got = unsafe {
            let mut view: ffi::Py_buffer = std::mem::zeroed();
            if ffi::PyObject_GetBuffer(buf.as_ptr(), &mut view, ffi::PyBUF_WRITABLE) < 0 {
                let e = PyErr::fetch(py);
                return this.fatal(py, e, "Fatal read error on socket transport");
            }
            let n = libc::recv(this.fd, view.buf.cast(), view.len as usize, libc::MSG_DONTWAIT);
            let err = crate::io::sock_io::errno();
            ffi::PyBuffer_Release(&mut view);
            if n < 0 {
                if crate::io::sock_io::would_block(err) {
                    return Ok(());
                }
                return this.fatal(py, os_error::from_errno(py, err), "Fatal read error on socket transport");
            }
            n as usize
        };
        if got == 0 {
            return Self::on_eof(slf);
        }
        this.count(py, got, 0);
        // The transport's protocol now, as asyncio reads `self._protocol` again.
        let Some(protocol) = field!(this, py, protocol) else { return Ok(()) };
        match protocol.call_method1(py, intern!(py, "buffer_updated"), (got,)) {
            Ok(_) => Ok(()),
            Err(e) => this.fatal(py, e, "Fatal error: protocol.buffer_updated() call failed."),
        }
    }

    fn on_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.loop_.get().debug(py) {
            if let Some(t) = this.transport(py) {
                t.call_method1("_log_debug", ("%r received EOF",))?;
            }
        }
        let Some(protocol) = field!(this, py, protocol) else { return Ok(()) };
        let keep_open = match protocol.call_method0(py, "eof_received").and_then(|r| r.bind(py).is_truthy()) {
            Ok(k) => k,
            Err(e) => return this.fatal(py, e, "Fatal error: protocol.eof_received() call failed."),
        };
        if keep_open {
            // The protocol may still write, but nothing more can be read.
            Self::set_watch(slf, READABLE, false)
        } else {
            Self::close(slf)
        }
    }

    fn write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.st.with(py, |s| s.conn_lost > 0) {
            return Ok(());
        }
        let outcome = this.st.with(py, |s| try_send(py, this.fd, &s.buf[s.start..]));
        match outcome {
            Attempt::NotReady => {}
            Attempt::Failed(e) => {
                Self::set_watch(slf, WRITABLE, false)?;
                this.st.with(py, State::clear_buffer);
                let value = e.clone_ref(py);
                this.fatal(py, e, "Fatal write error on socket transport")?;
                if let Some(w) = field!(this, py, empty_waiter) {
                    w.call_method1(py, "set_exception", (value.value(py),))?;
                }
                return Ok(());
            }
            Attempt::Done(n) => {
                this.count(py, 0, n);
                this.st.with(py, |s| s.consume(n));
            }
        }
        Self::maybe_resume_protocol(slf)?; // may write more
        if this.st.with(py, |s| s.pending()) == 0 {
            Self::set_watch(slf, WRITABLE, false)?;
            if let Some(w) = field!(this, py, empty_waiter) {
                w.call_method1(py, "set_result", (py.None(),))?;
            }
            let (closing, eof) = this.st.with(py, |s| (s.closing, s.eof));
            if closing {
                if let Some(t) = this.transport(py) {
                    t.call_method1("_call_connection_lost", (py.None(),))?;
                }
            } else if eof {
                Self::shutdown_write(this, py)?;
            }
        }
        Ok(())
    }

    fn shutdown_write(&self, py: Python<'_>) -> PyResult<()> {
        if unsafe { libc::shutdown(self.fd, libc::SHUT_WR) } < 0 {
            return Err(os_error::from_errno(py, crate::io::sock_io::errno()));
        }
        Ok(())
    }

    fn bind_protocol(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let buffered_type = BUFFERED_PROTOCOL.import(py, "asyncio.protocols", "BufferedProtocol")?;
        let buffered = protocol.is_instance(buffered_type)?;
        let raw_receiver = match RAW_RECEIVER.get(py) {
            Some(r) if protocol.is_instance(r.class.bind(py))? => Some((protocol.clone().unbind(), r)),
            _ => None,
        };
        let old = self.st.with(py, |s| {
            s.buffered = buffered;
            s.protocol_connected = true;
            (
                std::mem::replace(&mut s.raw_receiver, raw_receiver).map(|(layer, _)| layer),
                s.protocol.replace(protocol.clone().unbind()),
            )
        });
        drop(old);
        Ok(())
    }
}

impl ReadControl for StreamTransportCore {
    fn read_flags(&self, py: Python<'_>) -> (bool, bool) {
        self.st.with(py, |s| (s.closing, s.paused))
    }

    fn set_paused(&self, py: Python<'_>, paused: bool) {
        self.st.with(py, |s| s.paused = paused)
    }

    fn watch_reads(slf: &Bound<'_, Self>, on: bool) -> PyResult<()> {
        Self::set_watch(slf, READABLE, on)
    }

    fn event_loop(&self) -> &Py<LoopCore> {
        &self.loop_
    }

    fn py_transport<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.transport(py)
    }
}

impl Closing for StreamTransportCore {
    fn mark_closing(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| std::mem::replace(&mut s.closing, true))
    }

    fn conn_lost(&self, py: Python<'_>) -> u32 {
        self.st.with(py, |s| s.conn_lost)
    }

    fn count_lost(&self, py: Python<'_>) {
        self.st.with(py, |s| s.conn_lost += 1)
    }

    fn has_unsent(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.pending() > 0)
    }

    fn drop_unsent(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| {
            let had = s.pending() > 0;
            s.clear_buffer();
            had
        })
    }

    fn watch_writes(slf: &Bound<'_, Self>, on: bool) -> PyResult<()> {
        Self::set_watch(slf, WRITABLE, on)
    }
}

crate::reading_methods!(StreamTransportCore);
crate::write_limit_methods!(StreamTransportCore);
crate::closing_methods!(StreamTransportCore);

impl WriteFlow for StreamTransportCore {
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

impl StreamTransportCore {
    pub(crate) fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !(data.is_instance_of::<PyBytes>() || data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>()) {
            // asyncio's words, which depend on the Python (3.14 names the types).
            let prefix = py.import("ferroloop._transports")?.getattr("WRITE_TYPE_PREFIX")?;
            return Err(PyTypeError::new_err(format!("{}{}", prefix.str()?, data.get_type().name()?.repr()?)));
        }
        let (eof, sendfile, lost, pending) =
            this.st.with(py, |s| (s.eof, s.empty_waiter.is_some(), s.conn_lost, s.pending()));
        if eof {
            return Err(PyRuntimeError::new_err("Cannot call write() after write_eof()"));
        }
        if sendfile {
            return Err(PyRuntimeError::new_err("unable to write; sendfile is in progress"));
        }
        let held = HeldBuffer::get(data)?;
        let bytes = held.bytes();
        if bytes.is_empty() {
            return Ok(());
        }
        if lost > 0 {
            if lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES {
                if let Some(t) = this.transport(py) {
                    t.call_method1("_log_warning", ("socket.send() raised exception.",))?;
                }
            }
            this.st.with(py, |s| s.conn_lost += 1);
            return Ok(());
        }
        let mut rest = bytes;
        if pending == 0 {
            // Nothing queued: try the socket at once.
            match try_send(py, this.fd, bytes) {
                Attempt::Done(n) => {
                    this.count(py, 0, n);
                    if n == bytes.len() {
                        return Ok(());
                    }
                    rest = &bytes[n..];
                }
                Attempt::NotReady => {}
                Attempt::Failed(e) => return this.fatal(py, e, "Fatal write error on socket transport"),
            }
            Self::set_watch(slf, WRITABLE, true)?;
        }
        this.st.with(py, |s| s.buf.extend_from_slice(rest));
        Self::maybe_pause_protocol(slf)
    }
}

/// `transport.write(data)`: the call every protocol makes for every message.
pub struct Write;

impl FastcallMethod for Write {
    type Class = StreamTransportCore;
    type Output = PyAny;
    const NAME: &'static CStr = c"write";
    const DOC: &'static CStr = c"write($self, data)\n--\n\nWrite some data bytes to the transport.";

    unsafe fn call(py: Python<'_>, slf: Bound<'_, StreamTransportCore>, args: FastcallArgs<'_>) -> PyResult<Py<PyAny>> {
        let [data] = args.bind(py, "write", ["data"], 1)?;
        StreamTransportCore::write(&slf, &data.ok_or_else(|| fastcall::missing("write", "data"))?)?;
        Ok(py.None())
    }
}

#[pymethods]
impl StreamTransportCore {
    fn write_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let shutdown_now = this.st.with(py, |s| {
            if s.closing || s.eof {
                return None;
            }
            s.eof = true;
            Some(s.pending() == 0)
        });
        if shutdown_now == Some(true) {
            this.shutdown_write(py)?;
        }
        Ok(())
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    fn get_write_buffer_size(&self, py: Python<'_>) -> usize {
        self.st.with(py, |s| s.pending())
    }

    fn set_protocol(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        self.bind_protocol(py, protocol)
    }

    fn get_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        field!(self, py, protocol)
    }

    fn _make_empty_waiter(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if self.st.with(py, |s| s.empty_waiter.is_some()) {
            return Err(PyRuntimeError::new_err("Empty waiter is already set"));
        }
        let waiter = LoopCore::create_future(self.loop_.bind(py))?;
        if self.st.with(py, |s| s.pending()) == 0 {
            waiter.call_method1(py, "set_result", (py.None(),))?;
        }
        self.st.with(py, |s| s.empty_waiter = Some(waiter.clone_ref(py)));
        Ok(waiter)
    }

    fn _reset_empty_waiter(&self, py: Python<'_>) {
        drop(self.st.with(py, |s| s.empty_waiter.take()));
    }

    /// Counts `n` bytes `loop.sendfile` sent on this socket for it.
    fn _count_sent(&self, py: Python<'_>, n: usize) {
        self.count(py, 0, n)
    }

    /// Ends the connection's life: returns (sock, protocol, protocol_connected,
    /// empty_waiter) and lets go of everything the core held.
    fn _detach(&self, py: Python<'_>) -> PyResult<(Option<Py<PyAny>>, Option<Py<PyAny>>, bool, Option<Py<PyAny>>)> {
        if let Some(t) = self.transport(py) {
            forget_transport(self.loop_.bind(py).as_any(), self.fd, &t)?;
        }
        let taken = self.st.with(py, |s| {
            let out = (s.sock.take(), s.protocol.take(), s.protocol_connected, s.empty_waiter.take());
            let rest = (s.transport.take(), s.raw_receiver.take().map(|(layer, _)| layer), s.reader.take(), s.writer.take());
            (out, rest)
        });
        let (out, rest) = taken;
        drop(rest);
        Ok(out)
    }

    #[getter]
    fn _sock(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        field!(self, py, sock)
    }

    #[getter]
    fn _sock_fd(&self) -> RawFd {
        self.fd
    }

    #[getter]
    fn _paused(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.paused)
    }

    #[getter]
    fn _eof(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.eof)
    }

    #[getter]
    fn _sendfile_waiting(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.empty_waiter.is_some())
    }

    #[getter]
    fn _watching(&self, py: Python<'_>) -> (bool, bool) {
        self.st.with(py, |s| (s.reading, s.writing))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        // SAFETY: called by the garbage collector only.
        let s = unsafe { self.st.peek_for_gc() };
        for f in [&s.sock, &s.transport, &s.protocol, &s.empty_waiter] {
            visit.call(f)?;
        }
        if let Some((layer, _)) = &s.raw_receiver {
            visit.call(layer)?;
        }
        visit.call(&s.reader)?;
        visit.call(&s.writer)
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let s = self.st.with(py, std::mem::take);
            drop(s);
        })
    }
}

/// Makes the native core of a stream transport over `sock` (already
/// non-blocking) for the Python `transport`.
fn new_core(
    loop_: &Bound<'_, LoopCore>,
    sock: &Bound<'_, PyAny>,
    transport: &Bound<'_, PyAny>,
    protocol: &Bound<'_, PyAny>,
) -> PyResult<Py<StreamTransportCore>> {
    let py = loop_.py();
    let fd = crate::loop_core::event_loop::fileobj_to_fd(sock)?;
    let state = State {
        sock: Some(sock.clone().unbind()),
        transport: Some(transport.clone().unbind()),
        flow: FlowControl::default(),
        read_size: SMALL_READ_SIZE,
        large: false,
        ..State::default()
    };
    let core = Py::new(py, StreamTransportCore { loop_: loop_.clone().unbind(), fd, st: GilCell::new(state) })?;
    core.get().bind_protocol(py, protocol)?;
    let context = Handle::copy_current_context(py)?;
    let event = |writable| -> PyResult<Py<Handle>> {
        let cb = Py::new(py, TransportEvent { core: core.clone_ref(py), writable })?;
        Handle::new_native_in_context(py, loop_.clone().unbind(), cb, context.clone_ref(py))
    };
    let (reader, writer) = (event(false)?, event(true)?);
    core.get().st.with(py, |s| {
        s.reader = Some(reader);
        s.writer = Some(writer);
    });
    Ok(core)
}

/// `SocketTransport.__init__`, whole: one native call per connection where
/// asyncio runs a dozen Python frames. The server's accept loop calls it on
/// a transport it allocated itself.
#[pyfunction]
#[pyo3(signature = (transport, loop_, sock, protocol, waiter=None, extra=None, server=None))]
pub fn init_socket_transport(
    transport: &Bound<'_, PyAny>,
    loop_: &Bound<'_, LoopCore>,
    sock: &Bound<'_, PyAny>,
    protocol: &Bound<'_, PyAny>,
    waiter: Option<&Bound<'_, PyAny>>,
    extra: Option<Bound<'_, PyAny>>,
    server: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = transport.py();
    // asyncio's BaseTransport.__init__: the caller's dict, or a new one.
    let extra = match extra {
        Some(e) if !e.is_none() => e,
        _ => PyDict::new(py).into_any(),
    };
    transport.setattr(intern!(py, "_extra"), &extra)?;
    add_socket_extra(&extra, sock)?;
    let server = server.filter(|s| !s.is_none());
    transport.setattr(intern!(py, "_server"), server)?;
    let core = new_core(loop_, sock, transport, protocol)?;
    let fd = core.get().fd;
    set_nodelay(sock, fd)?;
    if let Some(server) = server {
        server.call_method1(intern!(py, "_attach"), (transport,))?;
    }
    start_transport(transport, loop_, fd, core.bind(py).as_any(), protocol, waiter)
}

/// As asyncio: TCP sockets send small writes at once, without waiting for
/// the peer's ACK (`TCP_NODELAY`).
fn set_nodelay(sock: &Bound<'_, PyAny>, fd: RawFd) -> PyResult<()> {
    let py = sock.py();
    let (family, type_, proto) = socket_kind(sock)?;
    if (family == libc::AF_INET || family == libc::AF_INET6) && type_ == libc::SOCK_STREAM && proto == libc::IPPROTO_TCP {
        let on: libc::c_int = 1;
        // SAFETY: a plain setsockopt on an fd, with a c_int option value.
        let r = unsafe {
            libc::setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, (&on as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t)
        };
        if r != 0 {
            return Err(os_error::from_errno(py, crate::io::sock_io::errno()));
        }
    }
    Ok(())
}

/// A socket object's (family, type, proto) as plain ints.
pub(crate) fn socket_kind(sock: &Bound<'_, PyAny>) -> PyResult<(i32, i32, i32)> {
    let proto = sock.getattr(intern!(sock.py(), "proto"))?.extract()?;
    Ok((raw_socket_member(sock, &RAW_FAMILY, "family")?, raw_socket_member(sock, &RAW_TYPE, "type")?, proto))
}

static RAW_FAMILY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static RAW_TYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static C_SOCKET: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The C socket's own `family` / `type` int: `socket.socket` shadows them
/// with properties that build an enum on every read. Socket-like objects
/// that are no `_socket.socket` (gunicorn's wrappers forward attributes
/// through `__getattr__`) are asked by name, as asyncio asks them.
fn raw_socket_member(sock: &Bound<'_, PyAny>, cell: &'static PyOnceLock<Py<PyAny>>, name: &str) -> PyResult<i32> {
    let py = sock.py();
    let descr = cell
        .get_or_try_init(py, || -> PyResult<Py<PyAny>> { Ok(py.import("_socket")?.getattr("socket")?.getattr(name)?.unbind()) })?
        .bind(py);
    let c_socket = C_SOCKET.get_or_try_init(py, || -> PyResult<Py<PyAny>> { Ok(py.import("_socket")?.getattr("socket")?.unbind()) })?;
    if !sock.is_instance(c_socket.bind(py))? {
        return sock.getattr(name)?.extract();
    }
    // SAFETY: the member descriptor's own __get__, as `descr.__get__(sock)`.
    let value = unsafe {
        let get = (*ffi::Py_TYPE(descr.as_ptr())).tp_descr_get.expect("a member descriptor has __get__");
        Bound::from_owned_ptr_or_err(py, get(descr.as_ptr(), sock.as_ptr(), std::ptr::null_mut()))?
    };
    value.extract()
}

/// A protocol that takes received bytes straight from the read buffer,
/// without a Python call: ferroloop's TLS layer, which registers its type
/// here when the module loads. The layer above knows this transport; this
/// transport does not know the layer above.
pub struct RawReceiver {
    /// The protocols it applies to (instances of this type).
    pub class: Py<PyType>,
    /// Takes bytes received (the protocol object, the bytes).
    pub feed: fn(&Bound<'_, PyAny>, &[u8]) -> PyResult<()>,
    /// What the bytes fed set off, once they are in.
    pub ready: fn(&Bound<'_, PyAny>) -> PyResult<()>,
}

pub static RAW_RECEIVER: PyOnceLock<RawReceiver> = PyOnceLock::new();

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<StreamTransportCore>()?;
    fastcall::install::<Write>(m.py())?;
    m.add_function(wrap_pyfunction!(init_socket_transport, m)?)?;
    Ok(())
}
