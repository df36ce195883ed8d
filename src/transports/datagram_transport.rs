//! The datagram transport's native core (UDP and Unix datagram sockets).
//!
//! One `recvfrom` per readiness event, the datagram and its sender's address
//! handed to the protocol's `datagram_received`; `sendto` tried at once and
//! queued (one entry per datagram) when the socket is not ready; the write
//! queue's flow control and the close/abort state machine.
//! `ferroloop._datagram.DatagramTransport` (an `asyncio.DatagramTransport`)
//! wraps it and keeps the once-per-endpoint and error-reporting parts in
//! Python. The contract is asyncio's `_SelectorDatagramTransport`: the same
//! callback order, the same errors routed to `error_received`, the same
//! messages.
//!
//! Addresses: IPv4, IPv6 and Unix sender addresses are built (`io/sock_addr.rs`)
//! exactly as the `socket` module builds them (`inet_ntop`, the same tuple shapes), and
//! the last one is kept with its raw `sockaddr`, so an echo server that
//! answers each datagram to its sender neither builds the address tuple again
//! nor parses it back for `sendto`. An address this file cannot convert (a
//! host name, `'<broadcast>'`, another family) goes through the socket
//! object's own `sendto`, so resolution and error messages stay Python's.

use crate::loop_core::event_loop::LoopCore;
use crate::transports::flow_control::FlowControl;
use crate::loop_core::gil_cell::GilCell;
use crate::loop_core::handle::{is_fatal, Handle, NativeCallback};
use crate::loop_core::loop_metrics::TransportKind;
use crate::transports::transport_core::{forget_transport, Closing, ReadControl, WriteFlow};
use crate::io::os_error;
use crate::io::sock_addr::{make_address, parse_address, SockAddr};
use crate::io::poller::{READABLE, WRITABLE};
use crate::io::sock_io::{errno, would_block, HeldBuffer};
use pyo3::exceptions::{
    PyAttributeError, PyBlockingIOError, PyInterruptedError, PyOSError, PyTypeError,
    PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};
use pyo3::{PyTraverseError, PyVisit};
use std::collections::VecDeque;
use std::os::fd::RawFd;

/// asyncio's `_SelectorTransport.max_size`.
const MAX_SIZE: usize = 256 * 1024;
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

thread_local! {
    /// Where datagrams land before being copied into an exactly sized bytes.
    static RECV_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct Queued {
    data: Vec<u8>,
    addr: Option<Py<PyAny>>,
}

#[derive(Default)]
struct State {
    sock: Option<Py<PyAny>>,
    /// The Python `DatagramTransport` protocols see.
    transport: Option<Py<PyAny>>,
    protocol: Option<Py<PyAny>>,
    protocol_connected: bool,
    /// The remote address the endpoint was made for (asyncio's `_address`).
    address: Option<Py<PyAny>>,
    reader: Option<Py<Handle>>,
    writer: Option<Py<Handle>>,
    queue: VecDeque<Queued>,
    buffer_size: usize,
    conn_lost: u32,
    closing: bool,
    paused: bool,
    flow: FlowControl,
    reading: bool,
    writing: bool,
    /// The last address seen or sent to, with its raw form.
    last: Option<(SockAddr, Py<PyAny>)>,
}

#[pyclass(frozen, module = "ferroloop._ferroloop")]
pub struct DatagramTransportCore {
    loop_: Py<LoopCore>,
    fd: RawFd,
    family: i32,
    /// The socket has a peer (`send`, not `sendto`), as asyncio decides from
    /// the `peername` extra.
    connected: bool,
    /// The family's addresses are converted here; otherwise the socket
    /// object's `recvfrom` / `sendto` do it.
    native_addresses: bool,
    /// Python 3.13 sends empty datagrams and counts 8 header bytes a datagram.
    py313: bool,
    max_size: usize,
    st: GilCell<State>,
}

/// The reader or writer callback of one datagram transport.
#[pyclass(frozen, module = "ferroloop._ferroloop")]
struct DatagramEvent {
    core: Py<DatagramTransportCore>,
    writable: bool,
}

impl NativeCallback for DatagramEvent {
    fn fire(&self, py: Python<'_>) -> PyResult<()> {
        self.__call__(py)
    }
}

#[pymethods]
impl DatagramEvent {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let core = self.core.bind(py);
        if self.writable {
            DatagramTransportCore::sendto_ready(core)
        } else {
            DatagramTransportCore::read_ready(core)
        }
    }

    #[getter]
    fn __qualname__(&self) -> &'static str {
        if self.writable {
            "DatagramTransport._sendto_ready"
        } else {
            "DatagramTransport._read_ready"
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

/// What one attempt to send a datagram came to, sorted as asyncio sorts the
/// socket call's outcome.
enum Sent {
    Done,
    NotReady,
    /// An OSError: for `protocol.error_received()`.
    OsError(PyErr),
    /// Anything else: a fatal error of the transport.
    Other(PyErr),
}

impl DatagramTransportCore {
    /// Datagram bytes received and sent, for the loop's metrics.
    #[inline]
    fn count(&self, py: Python<'_>, read: usize, written: usize) {
        self.loop_.get().count_bytes(py, TransportKind::Datagram, read, written)
    }

    fn transport<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        field!(self, py, transport).map(|t| t.into_bound(py))
    }

    fn header(&self) -> usize {
        if self.py313 {
            8
        } else {
            0
        }
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
            drop(this.loop_.get().take_watch(py, this.fd, dir));
        }
        this.st.with(py, |s| if dir == READABLE { s.reading = on } else { s.writing = on });
        Ok(())
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

    fn error_received(&self, py: Python<'_>, err: PyErr) -> PyResult<()> {
        let Some(protocol) = field!(self, py, protocol) else { return Ok(()) };
        protocol.call_method1(py, pyo3::intern!(py, "error_received"), (err.value(py),))?;
        Ok(())
    }

    /// The sender's address as a Python object, reusing the last one when
    /// the raw address is the same.
    fn address_of(&self, py: Python<'_>, sa: &SockAddr) -> PyResult<Py<PyAny>> {
        if let Some(addr) = self.st.with(py, |s| match &s.last {
            Some((raw, obj)) if raw.same(sa) => Some(obj.clone_ref(py)),
            _ => None,
        }) {
            return Ok(addr);
        }
        let addr = make_address(py, sa)?;
        if sa.len > 0 {
            let old = self.st.with(py, |s| s.last.replace((*sa, addr.clone_ref(py))));
            drop(old);
        }
        Ok(addr)
    }

    fn read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        // Not reading any more: queued in this iteration before reading
        // stopped (asyncio cancels the handle on remove_reader).
        if this.st.with(py, |s| s.conn_lost > 0 || !s.reading) {
            return Ok(());
        }
        if !this.native_addresses {
            return Self::read_ready_python(slf);
        }
        let mut sa = SockAddr::zeroed();
        let got = RECV_BUF.with(|b| {
            let mut buf = b.borrow_mut();
            if buf.len() < this.max_size {
                buf.resize(this.max_size, 0);
            }
            let n = unsafe {
                libc::recvfrom(
                    this.fd,
                    buf.as_mut_ptr().cast(),
                    this.max_size,
                    libc::MSG_DONTWAIT,
                    (&mut sa.storage as *mut libc::sockaddr_storage).cast(),
                    &mut sa.len,
                )
            };
            if n < 0 {
                return Err(errno());
            }
            this.count(py, n as usize, 0);
            Ok(PyBytes::new(py, &buf[..n as usize]).unbind())
        });
        let data = match got {
            Ok(d) => d,
            Err(e) if would_block(e) => return Ok(()),
            Err(e) => return this.error_received(py, os_error::from_errno(py, e)),
        };
        let addr = this.address_of(py, &sa)?;
        Self::deliver(this, py, data.into_any(), addr)
    }

    fn deliver(this: &Self, py: Python<'_>, data: Py<PyAny>, addr: Py<PyAny>) -> PyResult<()> {
        // Looked up on every call, as asyncio does: a protocol may rebind it.
        match field!(this, py, protocol) {
            Some(p) => p.call_method1(py, pyo3::intern!(py, "datagram_received"), (data, addr)).map(drop),
            None => Ok(()),
        }
    }

    /// A family whose addresses this file does not build: the socket's recvfrom.
    fn read_ready_python(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let Some(sock) = field!(this, py, sock) else { return Ok(()) };
        match sock.call_method1(py, "recvfrom", (this.max_size,)) {
            Ok(pair) => {
                let pair = pair.bind(py);
                this.count(py, pair.get_item(0)?.len()?, 0);
                Self::deliver(this, py, pair.get_item(0)?.unbind(), pair.get_item(1)?.unbind())
            }
            Err(e) if e.is_instance_of::<PyBlockingIOError>(py) || e.is_instance_of::<PyInterruptedError>(py) => Ok(()),
            Err(e) if e.is_instance_of::<PyOSError>(py) => this.error_received(py, e),
            Err(e) => this.fatal(py, e, "Fatal read error on datagram transport"),
        }
    }

    /// One send of `data` to `addr` (ignored on a connected socket).
    fn send_one(&self, py: Python<'_>, data: &[u8], data_obj: Option<&Bound<'_, PyAny>>, addr: Option<&Bound<'_, PyAny>>) -> PyResult<Sent> {
        if self.st.with(py, |s| s.sock.is_none()) {
            // asyncio's transport has dropped its socket by now and fails
            // reporting that (its loop is gone as well). The fd number may
            // belong to another file already: never touch it.
            return Err(PyAttributeError::new_err("'NoneType' object has no attribute 'call_exception_handler'"));
        }
        let classify = |n: isize| -> Sent {
            if n >= 0 {
                return Sent::Done;
            }
            let e = errno();
            if would_block(e) {
                Sent::NotReady
            } else {
                Sent::OsError(os_error::from_errno(py, e))
            }
        };
        if self.connected && self.native_addresses {
            let n = unsafe { libc::send(self.fd, data.as_ptr().cast(), data.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
            return Ok(classify(n));
        }
        if self.native_addresses {
            if let Some(addr) = addr {
                let cached = self.st.with(py, |s| match &s.last {
                    Some((raw, obj)) if obj.is(addr) => Some(*raw),
                    _ => None,
                });
                let raw = cached.or_else(|| {
                    let raw = parse_address(self.family, addr)?;
                    let old = self.st.with(py, |s| s.last.replace((raw, addr.clone().unbind())));
                    drop(old);
                    Some(raw)
                });
                if let Some(raw) = raw {
                    let n = unsafe {
                        libc::sendto(
                            self.fd,
                            data.as_ptr().cast(),
                            data.len(),
                            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                            (&raw.storage as *const libc::sockaddr_storage).cast(),
                            raw.len,
                        )
                    };
                    return Ok(classify(n));
                }
            }
        }
        // The socket object's own send / sendto: resolution, odd addresses
        // and their error messages are Python's.
        let Some(sock) = field!(self, py, sock) else { return Ok(Sent::Done) };
        let payload: Bound<'_, PyAny> = match data_obj {
            Some(d) => d.clone(),
            None => PyBytes::new(py, data).into_any(),
        };
        let result = if self.connected {
            sock.call_method1(py, "send", (payload,))
        } else {
            let addr = addr.map_or_else(|| py.None(), |a| a.clone().unbind());
            sock.call_method1(py, "sendto", (payload, addr))
        };
        Ok(match result {
            Ok(_) => Sent::Done,
            Err(e) if is_fatal(py, &e) => return Err(e),
            Err(e) if e.is_instance_of::<PyBlockingIOError>(py) || e.is_instance_of::<PyInterruptedError>(py) => Sent::NotReady,
            Err(e) if e.is_instance_of::<PyOSError>(py) => Sent::OsError(e),
            Err(e) => Sent::Other(e),
        })
    }

    fn sendto_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !this.st.with(py, |s| s.writing) {
            return Ok(());
        }
        let hdr = this.header();
        loop {
            let Some(item) = this.st.with(py, |s| {
                let item = s.queue.pop_front()?;
                s.buffer_size = s.buffer_size.saturating_sub(item.data.len() + hdr);
                Some(item)
            }) else {
                break;
            };
            let addr = item.addr.as_ref().map(|a| a.bind(py).clone());
            match this.send_one(py, &item.data, None, addr.as_ref())? {
                Sent::Done => this.count(py, 0, item.data.len()),
                Sent::NotReady => {
                    this.st.with(py, |s| {
                        s.buffer_size += item.data.len() + hdr;
                        s.queue.push_front(item);
                    });
                    break;
                }
                Sent::OsError(e) => return this.error_received(py, e),
                Sent::Other(e) => return this.fatal(py, e, "Fatal write error on datagram transport"),
            }
        }
        Self::maybe_resume_protocol(slf)?; // may queue more
        if this.st.with(py, |s| s.queue.is_empty()) {
            Self::set_watch(slf, WRITABLE, false)?;
            if this.st.with(py, |s| s.closing) {
                if let Some(t) = this.transport(py) {
                    t.call_method1("_call_connection_lost", (py.None(),))?;
                }
            }
        }
        Ok(())
    }

    fn bind_protocol(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) {
        let old = self.st.with(py, |s| {
            s.protocol_connected = true;
            s.protocol.replace(protocol.clone().unbind())
        });
        drop(old);
    }
}

impl ReadControl for DatagramTransportCore {
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

impl Closing for DatagramTransportCore {
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
        self.st.with(py, |s| !s.queue.is_empty())
    }

    fn drop_unsent(&self, py: Python<'_>) -> bool {
        let dropped = self.st.with(py, |s| {
            s.buffer_size = 0;
            std::mem::take(&mut s.queue)
        });
        !dropped.is_empty()
    }

    fn watch_writes(slf: &Bound<'_, Self>, on: bool) -> PyResult<()> {
        Self::set_watch(slf, WRITABLE, on)
    }
}

crate::reading_methods!(DatagramTransportCore);
crate::write_limit_methods!(DatagramTransportCore);
crate::closing_methods!(DatagramTransportCore);

impl WriteFlow for DatagramTransportCore {
    fn with_flow<R>(&self, py: Python<'_>, f: impl FnOnce(&mut FlowControl, usize) -> R) -> R {
        self.st.with(py, |s| {
            let buffered = s.buffer_size;
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
impl DatagramTransportCore {
    #[pyo3(signature = (data, addr=None))]
    fn sendto(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>, addr: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !(data.is_instance_of::<PyBytes>() || data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>()) {
            return Err(PyTypeError::new_err(format!(
                "data argument must be a bytes-like object, not {}",
                data.get_type().name()?.repr()?
            )));
        }
        let held = HeldBuffer::get(data)?;
        let bytes = held.bytes();
        if bytes.is_empty() && !this.py313 {
            return Ok(());
        }
        let mut addr = addr.filter(|a| !a.is_none());
        let address = field!(this, py, address).map(|a| a.into_bound(py));
        if let Some(address) = &address {
            if let Some(a) = &addr {
                if !(a.is(address) || a.eq(address)?) {
                    return Err(PyValueError::new_err(format!("Invalid address: must be None or {}", address.str()?)));
                }
            }
            addr = Some(address.clone());
        }
        let (lost, queued) = this.st.with(py, |s| (s.conn_lost, !s.queue.is_empty()));
        if lost > 0 && address.is_some() {
            if lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES {
                // asyncio's logger: the transport may have let go of its wrapper.
                py.import("asyncio.log")?.getattr("logger")?.call_method1("warning", ("socket.send() raised exception.",))?;
            }
            this.st.with(py, |s| s.conn_lost += 1);
            return Ok(());
        }
        if !queued {
            match this.send_one(py, bytes, Some(data), addr.as_ref())? {
                Sent::Done => {
                    this.count(py, 0, bytes.len());
                    return Ok(());
                }
                Sent::NotReady => Self::set_watch(slf, WRITABLE, true)?,
                Sent::OsError(e) => return this.error_received(py, e),
                Sent::Other(e) => return this.fatal(py, e, "Fatal write error on datagram transport"),
            }
        }
        let hdr = this.header();
        this.st.with(py, |s| {
            s.queue.push_back(Queued { data: bytes.to_vec(), addr: addr.map(Bound::unbind) });
            s.buffer_size += bytes.len() + hdr;
        });
        Self::maybe_pause_protocol(slf)
    }

    fn get_write_buffer_size(&self, py: Python<'_>) -> usize {
        self.st.with(py, |s| s.buffer_size)
    }

    fn set_protocol(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) {
        self.bind_protocol(py, protocol)
    }

    fn get_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        field!(self, py, protocol)
    }

    /// Ends the endpoint's life: returns (sock, protocol, protocol_connected)
    /// and lets go of everything the core held.
    fn _detach(&self, py: Python<'_>) -> PyResult<(Option<Py<PyAny>>, Option<Py<PyAny>>, bool)> {
        if let Some(t) = self.transport(py) {
            forget_transport(self.loop_.bind(py).as_any(), self.fd, &t)?;
        }
        let (out, rest) = self.st.with(py, |s| {
            let out = (s.sock.take(), s.protocol.take(), s.protocol_connected);
            let rest = (s.transport.take(), s.reader.take(), s.writer.take(), s.last.take(), std::mem::take(&mut s.queue));
            (out, rest)
        });
        drop(rest);
        Ok(out)
    }

    #[getter]
    fn _sock(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        field!(self, py, sock)
    }

    #[getter]
    fn _address(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        field!(self, py, address)
    }

    #[getter]
    fn _paused(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.paused)
    }

    #[getter]
    fn _queued(&self, py: Python<'_>) -> usize {
        self.st.with(py, |s| s.queue.len())
    }

    #[getter]
    fn _watching(&self, py: Python<'_>) -> (bool, bool) {
        self.st.with(py, |s| (s.reading, s.writing))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        // SAFETY: called by the garbage collector only.
        let s = unsafe { self.st.peek_for_gc() };
        for f in [&s.sock, &s.transport, &s.protocol, &s.address] {
            visit.call(f)?;
        }
        for q in &s.queue {
            visit.call(&q.addr)?;
        }
        if let Some((_, a)) = &s.last {
            visit.call(a)?;
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

/// Makes the native core of a datagram transport over `sock` (already
/// non-blocking) for the Python `transport`. `connected` is asyncio's test of
/// the `peername` extra; `address` the remote address the endpoint was made for.
#[pyfunction]
#[pyo3(signature = (loop_, sock, transport, protocol, address, connected, max_size=MAX_SIZE))]
fn datagram_transport_core(
    loop_: &Bound<'_, LoopCore>,
    sock: &Bound<'_, PyAny>,
    transport: &Bound<'_, PyAny>,
    protocol: &Bound<'_, PyAny>,
    address: Option<Bound<'_, PyAny>>,
    connected: bool,
    max_size: usize,
) -> PyResult<Py<DatagramTransportCore>> {
    let py = loop_.py();
    let fd = crate::loop_core::event_loop::fileobj_to_fd(sock)?;
    let family: i32 = sock.getattr("family")?.extract()?;
    let state = State {
        sock: Some(sock.clone().unbind()),
        transport: Some(transport.clone().unbind()),
        address: address.filter(|a| !a.is_none()).map(Bound::unbind),
        flow: FlowControl::default(),
        ..State::default()
    };
    let core = Py::new(
        py,
        DatagramTransportCore {
            loop_: loop_.clone().unbind(),
            fd,
            family,
            connected,
            native_addresses: matches!(family, libc::AF_INET | libc::AF_INET6 | libc::AF_UNIX),
            py313: py.version_info() >= (3, 13),
            max_size: max_size.max(1),
            st: GilCell::new(state),
        },
    )?;
    core.get().bind_protocol(py, protocol);
    let context = Handle::copy_current_context(py)?;
    let event = |writable| -> PyResult<Py<Handle>> {
        let cb = Py::new(py, DatagramEvent { core: core.clone_ref(py), writable })?;
        Handle::new_native_in_context(py, loop_.clone().unbind(), cb, context.clone_ref(py))
    };
    let (reader, writer) = (event(false)?, event(true)?);
    core.get().st.with(py, |s| {
        s.reader = Some(reader);
        s.writer = Some(writer);
    });
    Ok(core)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DatagramTransportCore>()?;
    m.add_function(wrap_pyfunction!(datagram_transport_core, m)?)?;
    Ok(())
}
