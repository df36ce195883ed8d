//! The TLS layer: asyncio's `SSLProtocol` state machine, native.
//!
//! It sits between a stream transport (below, which it is the protocol of)
//! and the application's protocol (above, which sees `ferroloop._tls`'s
//! `SSLTransport`). The caller's `ssl.SSLContext` does the cryptography
//! through an `ssl.SSLObject` over two `ssl.MemoryBIO`s, so every context
//! option keeps working; the states, buffering and flow control are here.
//! The contract is CPython 3.12's `Lib/asyncio/sslproto.py`: the same
//! states and transitions, callback order, messages and flow-control marks.
//!
//! Over ferroloop's own stream transport, received bytes go from the
//! transport's read buffer straight into the incoming BIO and the outgoing
//! BIO's bytes straight to the transport's write, without Python frames.

use crate::loop_core::event_loop::LoopCore;
use crate::transports::flow_control::FlowControl;
use crate::loop_core::gil_cell::GilCell;
use crate::loop_core::handle::is_fatal;
use crate::loop_core::loop_metrics::TransportKind;
use crate::io::read_bytes::ReadBytes;
use crate::transports::stream_transport::{RawReceiver, StreamTransportCore, RAW_RECEIVER};
use crate::transports::transport_core::new_instance;
use pyo3::exceptions::{PyAssertionError, PyConnectionAbortedError, PyConnectionResetError, PyException, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyMemoryView, PySlice, PyType};
use pyo3::{intern, PyTraverseError, PyVisit};
use std::collections::VecDeque;

/// asyncio's `SSLProtocol.max_size`: bytes asked of each `SSLObject.read()`.
const MAX_SIZE: usize = 256 * 1024;
/// asyncio's `constants.FLOW_CONTROL_HIGH_WATER_SSL_READ` / `_WRITE` (KiB).
const HIGH_WATER_READ: usize = 256 * 1024;
const HIGH_WATER_WRITE: usize = 512 * 1024;
/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

thread_local! {
    /// Where records are decrypted before they become the protocol's bytes.
    static PLAINTEXT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

static SSL_WANT_READ: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SSL_SYSCALL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SSL_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static CERT_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SSL_OBJECT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static NATIVE_ENGINE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static BUFFERED_PROTOCOL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static CANCELLED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static TIMEOUT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `SSLProtocolState`: the TLS session's phase.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Unwrapped,
    DoHandshake,
    Wrapped,
    Flushing,
    Shutdown,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Unwrapped => "UNWRAPPED",
            Phase::DoHandshake => "DO_HANDSHAKE",
            Phase::Wrapped => "WRAPPED",
            Phase::Flushing => "FLUSHING",
            Phase::Shutdown => "SHUTDOWN",
        }
    }

    /// asyncio's allowed transitions: anything may unwrap, the rest go
    /// forward one step at a time.
    fn may_become(self, next: Phase) -> bool {
        use Phase::*;
        matches!(
            (self, next),
            (_, Unwrapped) | (Unwrapped, DoHandshake) | (DoHandshake, Wrapped) | (Wrapped, Flushing) | (Flushing, Shutdown)
        )
    }
}

/// `AppProtocolState`: which of the application protocol's callbacks ran.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum AppPhase {
    Init,
    ConMade,
    Eof,
    ConLost,
}

#[derive(Default)]
struct Objects {
    app_protocol: Option<Py<PyAny>>,
    /// A buffered application protocol's bound callbacks, looked up once.
    /// (`data_received` is looked up per call, as asyncio's and uvloop's TLS
    /// layers do: protocols rebind it on the instance.)
    app_get_buffer: Option<Py<PyAny>>,
    app_buffer_updated: Option<Py<PyAny>>,
    app_transport: Option<Py<PyAny>>,
    /// The transport below.
    transport: Option<Py<PyAny>>,
    /// Its native core, when it is ferroloop's stream transport.
    raw_core: Option<Py<StreamTransportCore>>,
    waiter: Option<Py<PyAny>>,
    /// The `ssl.SSLObject` users see (`ssl_object` extra info).
    sslobj: Option<Py<PyAny>>,
    /// What reads, writes and handshakes go through: the `SSLObject`'s own
    /// `_ssl` object when it is a plain `ssl.SSLObject` (whose methods only
    /// forward there), the `SSLObject` itself for a context's subclass.
    ssl_io: Option<Py<PyAny>>,
    incoming: Option<Py<PyAny>>,
    outgoing: Option<Py<PyAny>>,
    extra: Option<Py<PyDict>>,
    /// `get_buffer()`'s buffer, for transports other than ferroloop's.
    read_buffer: Option<Py<PyAny>>,
    write_backlog: VecDeque<Py<PyAny>>,
    handshake_timeout_handle: Option<Py<PyAny>>,
    shutdown_timeout_handle: Option<Py<PyAny>>,
}

struct State {
    obj: Objects,
    phase: Phase,
    app_phase: AppPhase,
    app_buffered: bool,
    app_transport_created: bool,
    write_buffer_size: usize,
    conn_lost: u32,
    ssl_writing_paused: bool,
    app_reading_paused: bool,
    ssl_reading_paused: bool,
    app_writing_paused: bool,
    eof_received: bool,
    incoming_limits: FlowControl,
    outgoing_limits: FlowControl,
    handshake_start: Option<f64>,
}

#[pyclass(frozen, subclass, weakref, module = "ferroloop._ferroloop")]
pub struct TLSProtocolCore {
    loop_: Py<LoopCore>,
    handshake_timeout: Py<PyAny>,
    shutdown_timeout: Py<PyAny>,
    /// Whether `ssl_io` is `_ssl`'s own C object, which lets go of a buffer
    /// before it returns: only then is `read()` handed a memoryview over our
    /// reused buffer. Python code (an `sslobject_class` subclass) could keep
    /// a slice of that view, which would see later records and, once the
    /// thread's buffer is freed, freed memory; it is asked for bytes
    /// instead, as asyncio asks. (The BIOs are always `_ssl.MemoryBIO`s:
    /// `wrap_bio` takes nothing else and the type cannot be subclassed.)
    native_engine: bool,
    st: GilCell<State>,
}

macro_rules! obj {
    ($this:expr, $py:expr, $f:ident) => {
        $this.st.with($py, |s| s.obj.$f.as_ref().map(|x| x.clone_ref($py)))
    };
}

fn imported<'py>(py: Python<'py>, cell: &'static PyOnceLock<Py<PyAny>>, module: &str, name: &str) -> PyResult<&'py Bound<'py, PyAny>> {
    cell.import(py, module, name)
}

fn is_instance(py: Python<'_>, e: &PyErr, cell: &'static PyOnceLock<Py<PyAny>>, module: &str, name: &str) -> PyResult<bool> {
    e.value(py).is_instance(imported(py, cell, module, name)?)
}

/// asyncio's `SSLAgainErrors`: the TLS engine needs more input first.
fn is_again(py: Python<'_>, e: &PyErr) -> PyResult<bool> {
    Ok(is_instance(py, e, &SSL_WANT_READ, "ssl", "SSLWantReadError")? || is_instance(py, e, &SSL_SYSCALL, "ssl", "SSLSyscallError")?)
}

fn is_ssl_error(py: Python<'_>, e: &PyErr) -> PyResult<bool> {
    is_instance(py, e, &SSL_ERROR, "ssl", "SSLError")
}

/// `except Exception`: what asyncio's TLS layer turns into a fatal error.
fn is_exception(py: Python<'_>, e: &PyErr) -> bool {
    e.is_instance_of::<PyException>(py)
}

/// Lets go of a memoryview over one of our reused buffers. If anything else
/// kept a reference, the view is released first, so it can no longer read
/// memory that later data overwrites; usually ours is the only one.
fn release_view(view: Bound<'_, PyAny>) -> PyResult<()> {
    if unsafe { ffi::Py_REFCNT(view.as_ptr()) } > 1 {
        view.call_method0(intern!(view.py(), "release"))?;
    }
    Ok(())
}

/// Copies what a Python `read()` returned into `dest`: its length, or
/// ValueError if it returned more than it was asked for.
fn copy_chunk(chunk: &Bound<'_, PyAny>, dest: &mut [u8]) -> PyResult<usize> {
    let chunk = match chunk.cast::<PyBytes>() {
        Ok(b) => b.clone(),
        Err(_) => chunk.py().get_type::<PyBytes>().call1((chunk,))?.cast_into::<PyBytes>()?,
    };
    let data = chunk.as_bytes();
    let n = data.len();
    if n > dest.len() {
        return Err(PyValueError::new_err(format!("read() returned {n} bytes, more than the {} asked for", dest.len())));
    }
    dest[..n].copy_from_slice(data);
    Ok(n)
}

fn logger(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    // Looked up per call, like asyncio's module global: code may replace it.
    py.import("asyncio.sslproto")?.getattr("logger")
}

impl TLSProtocolCore {
    /// Plaintext handed to the application and taken from it, for the
    /// loop's metrics.
    #[inline]
    fn count(&self, py: Python<'_>, read: usize, written: usize) {
        self.loop_.get().count_bytes(py, TransportKind::Tls, read, written)
    }

    fn debug(&self, py: Python<'_>) -> bool {
        self.loop_.get().debug(py)
    }

    fn phase(&self, py: Python<'_>) -> Phase {
        self.st.with(py, |s| s.phase)
    }

    fn set_phase(&self, py: Python<'_>, next: Phase) -> PyResult<()> {
        self.st.with(py, |s| {
            if s.phase.may_become(next) {
                s.phase = next;
                Ok(())
            } else {
                Err(PyRuntimeError::new_err(format!(
                    "cannot switch state from SSLProtocolState.{} to SSLProtocolState.{}",
                    s.phase.name(),
                    next.name()
                )))
            }
        })
    }

    fn ssl_io<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        obj!(self, py, ssl_io).map(|o| o.into_bound(py)).ok_or_else(|| PyRuntimeError::new_err("TLS protocol is cleared"))
    }

    fn pending(&self, py: Python<'_>, bio: Option<Py<PyAny>>) -> PyResult<usize> {
        match bio {
            Some(b) => b.bind(py).getattr(intern!(py, "pending"))?.extract(),
            None => Ok(0),
        }
    }

    fn read_buffer_size(&self, py: Python<'_>) -> PyResult<usize> {
        self.pending(py, obj!(self, py, incoming))
    }

    fn write_buffer_size(&self, py: Python<'_>) -> PyResult<usize> {
        let queued = self.st.with(py, |s| s.write_buffer_size);
        Ok(self.pending(py, obj!(self, py, outgoing))? + queued)
    }

    fn call_soon(&self, py: Python<'_>, callback: Bound<'_, PyAny>, arg: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let lp = self.loop_.bind(py);
        match arg {
            Some(a) => lp.call_method1(intern!(py, "call_soon"), (callback, a))?,
            None => lp.call_method1(intern!(py, "call_soon"), (callback,))?,
        };
        Ok(())
    }

    fn wakeup_waiter(&self, py: Python<'_>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let Some(waiter) = self.st.with(py, |s| s.obj.waiter.take()) else { return Ok(()) };
        let waiter = waiter.into_bound(py);
        if !waiter.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
            match exc {
                Some(e) => waiter.call_method1(intern!(py, "set_exception"), (e,))?,
                None => waiter.call_method1(intern!(py, "set_result"), (py.None(),))?,
            };
        }
        Ok(())
    }

    fn cancel_timeouts(&self, py: Python<'_>, handshake: bool, shutdown: bool) -> PyResult<()> {
        let (h, s) = self.st.with(py, |st| {
            (
                if handshake { st.obj.handshake_timeout_handle.take() } else { None },
                if shutdown { st.obj.shutdown_timeout_handle.take() } else { None },
            )
        });
        for handle in [h, s].into_iter().flatten() {
            handle.call_method0(py, intern!(py, "cancel"))?;
        }
        Ok(())
    }

    /// asyncio's `_fatal_error`: force-close below, then report.
    fn fatal_error(slf: &Bound<'_, Self>, exc: &Bound<'_, PyAny>, message: &str) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let transport = obj!(this, py, transport);
        if let Some(t) = &transport {
            t.call_method1(py, intern!(py, "_force_close"), (exc,))?;
        }
        if exc.is_instance_of::<PyOSError>() {
            if this.debug(py) {
                let kwargs = PyDict::new(py);
                // The exception itself: no `except` block is active here.
                kwargs.set_item("exc_info", exc)?;
                logger(py)?.call_method("debug", ("%r: %s", slf, message), Some(&kwargs))?;
            }
        } else if !exc.is_instance(imported(py, &CANCELLED, "asyncio.exceptions", "CancelledError")?)? {
            let ctx = PyDict::new(py);
            ctx.set_item("message", message)?;
            ctx.set_item("exception", exc)?;
            ctx.set_item("transport", transport)?;
            ctx.set_item("protocol", slf)?;
            this.loop_.bind(py).call_method1(intern!(py, "call_exception_handler"), (ctx,))?;
        }
        Ok(())
    }

    // -- handshake --------------------------------------------------------

    fn start_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let start = if this.debug(py) {
            logger(py)?.call_method1("debug", ("%r starts SSL handshake", slf))?;
            Some(crate::loop_core::event_loop::monotonic())
        } else {
            None
        };
        this.st.with(py, |s| s.handshake_start = start);
        this.set_phase(py, Phase::DoHandshake)?;
        let handle = this.loop_.bind(py).call_method1(
            intern!(py, "call_later"),
            (this.handshake_timeout.bind(py), slf.getattr(intern!(py, "_check_handshake_timeout"))?),
        )?;
        drop(this.st.with(py, |s| s.obj.handshake_timeout_handle.replace(handle.unbind())));
        Self::do_handshake(slf)
    }

    fn do_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        match slf.get().ssl_io(py)?.call_method0(intern!(py, "do_handshake")) {
            Ok(_) => Self::on_handshake_complete(slf, None),
            Err(e) if is_again(py, &e)? => Self::process_outgoing(slf),
            Err(e) if is_ssl_error(py, &e)? => Self::on_handshake_complete(slf, Some(e)),
            Err(e) => Err(e),
        }
    }

    fn on_handshake_complete(slf: &Bound<'_, Self>, handshake_exc: Option<PyErr>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.cancel_timeouts(py, true, false)?;
        let sslobj = obj!(this, py, sslobj).map(|o| o.into_bound(py));
        // The queries go to the engine directly, as the other TLS calls do.
        let peercert = match handshake_exc {
            Some(e) => Err(e),
            None => this.set_phase(py, Phase::Wrapped).and_then(|_| this.ssl_io(py)?.call_method0(intern!(py, "getpeercert"))),
        };
        let peercert = match peercert {
            Ok(p) => p,
            Err(e) if is_exception(py, &e) => {
                this.set_phase(py, Phase::Unwrapped)?;
                let message = if is_instance(py, &e, &CERT_ERROR, "ssl", "CertificateError")? {
                    "SSL handshake failed on verifying the certificate"
                } else {
                    "SSL handshake failed"
                };
                let exc = e.into_value(py).into_bound(py).into_any();
                Self::fatal_error(slf, &exc, message)?;
                return this.wakeup_waiter(py, Some(&exc));
            }
            Err(e) => return Err(e),
        };
        if let Some(start) = this.st.with(py, |s| s.handshake_start) {
            let ms = (crate::loop_core::event_loop::monotonic() - start) * 1e3;
            logger(py)?.call_method1("debug", ("%r: SSL handshake took %.1f ms", slf, ms))?;
        }
        if let (Some(extra), Some(o)) = (obj!(this, py, extra), &sslobj) {
            let extra = extra.bind(py);
            let io = this.ssl_io(py)?;
            extra.set_item(intern!(py, "peercert"), peercert)?;
            extra.set_item(intern!(py, "cipher"), io.call_method0(intern!(py, "cipher"))?)?;
            extra.set_item(intern!(py, "compression"), io.call_method0(intern!(py, "compression"))?)?;
            extra.set_item(intern!(py, "ssl_object"), o)?;
        }
        if this.st.with(py, |s| s.app_phase) == AppPhase::Init {
            this.st.with(py, |s| s.app_phase = AppPhase::ConMade);
            let transport = this.app_transport(py)?;
            if let Some(p) = obj!(this, py, app_protocol) {
                p.call_method1(py, intern!(py, "connection_made"), (transport,))?;
            }
        }
        this.wakeup_waiter(py, None)?;
        Self::do_read(slf)
    }

    fn app_transport(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        obj!(self, py, app_transport).ok_or_else(|| PyRuntimeError::new_err("Creating _SSLProtocolTransport twice"))
    }

    // -- shutdown ---------------------------------------------------------

    fn start_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let phase = this.phase(py);
        if matches!(phase, Phase::Flushing | Phase::Shutdown | Phase::Unwrapped) {
            return Ok(());
        }
        if let Some(t) = obj!(this, py, app_transport) {
            t.setattr(py, intern!(py, "_closed"), true)?;
        }
        if phase == Phase::DoHandshake {
            return Self::abort(slf, py.None().into_bound(py));
        }
        this.set_phase(py, Phase::Flushing)?;
        Self::start_shutdown_timeout(slf)?;
        Self::do_flush(slf)
    }

    fn do_flush(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_read(slf)?;
        slf.get().set_phase(slf.py(), Phase::Shutdown)?;
        Self::do_shutdown(slf)
    }

    fn do_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let unwrapped = if this.st.with(py, |s| s.eof_received) {
            Ok(())
        } else {
            match obj!(this, py, sslobj) {
                Some(o) => o.call_method0(py, intern!(py, "unwrap")).map(drop),
                None => Ok(()),
            }
        };
        match unwrapped {
            Ok(()) => {
                Self::process_outgoing(slf)?;
                Self::call_eof_received(slf)?;
                Self::on_shutdown_complete(slf, None)
            }
            Err(e) if is_again(py, &e)? => Self::process_outgoing(slf),
            Err(e) if is_ssl_error(py, &e)? => Self::on_shutdown_complete(slf, Some(e)),
            Err(e) => Err(e),
        }
    }

    fn on_shutdown_complete(slf: &Bound<'_, Self>, exc: Option<PyErr>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if let Some(e) = exc {
            this.cancel_timeouts(py, false, true)?;
            return Self::fatal_error(slf, e.value(py).as_any(), "Fatal error on transport");
        }
        // The transport's close() first flushes its write buffer, which a
        // peer that does not read can hold up forever: the shutdown timeout
        // stays (or starts, when the peer began the shutdown) until
        // connection_lost, as in asyncio from 3.14 on.
        if this.st.with(py, |s| s.obj.shutdown_timeout_handle.is_none()) {
            Self::start_shutdown_timeout(slf)?;
        }
        match obj!(this, py, transport) {
            Some(t) => this.call_soon(py, t.bind(py).getattr(intern!(py, "close"))?, None),
            None => Ok(()),
        }
    }

    fn start_shutdown_timeout(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let handle = this.loop_.bind(py).call_method1(
            intern!(py, "call_later"),
            (this.shutdown_timeout.bind(py), slf.getattr(intern!(py, "_check_shutdown_timeout"))?),
        )?;
        drop(this.st.with(py, |s| s.obj.shutdown_timeout_handle.replace(handle.unbind())));
        Ok(())
    }

    fn abort(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.set_phase(py, Phase::Unwrapped)?;
        if let Some(t) = obj!(this, py, transport) {
            t.call_method1(py, intern!(py, "_force_close"), (exc,))?;
        }
        Ok(())
    }

    // -- outgoing ---------------------------------------------------------

    fn write_appdata<'py>(slf: &Bound<'py, Self>, data: impl Iterator<Item = PyResult<Bound<'py, PyAny>>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if matches!(this.phase(py), Phase::Flushing | Phase::Shutdown | Phase::Unwrapped) {
            if this.st.with(py, |s| s.conn_lost) >= LOG_THRESHOLD_FOR_CONNLOST_WRITES {
                logger(py)?.call_method1("warning", ("SSL connection is closed",))?;
            }
            this.st.with(py, |s| s.conn_lost += 1);
            return Ok(());
        }
        for item in data {
            let item = item?;
            let n = item.len()?;
            this.st.with(py, |s| {
                s.obj.write_backlog.push_back(item.unbind());
                s.write_buffer_size += n;
            });
        }
        if this.phase(py) == Phase::Wrapped {
            if let Err(e) = Self::do_write(slf) {
                if !is_exception(py, &e) {
                    return Err(e);
                }
                Self::fatal_error(slf, e.value(py).as_any(), "Fatal error on SSL protocol")?;
            }
        }
        Ok(())
    }

    fn do_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let io = this.ssl_io(py)?;
        while let Some(data) = this.st.with(py, |s| s.obj.write_backlog.front().map(|d| d.clone_ref(py))) {
            let data = data.into_bound(py);
            let count: usize = match io.call_method1(intern!(py, "write"), (&data,)) {
                Ok(c) => c.extract()?,
                Err(e) if is_again(py, &e)? => break,
                Err(e) => return Err(e),
            };
            this.count(py, 0, count);
            let len = data.len()?;
            if count < len {
                let rest = data.get_item(PySlice::new(py, count as isize, len as isize, 1))?;
                this.st.with(py, |s| {
                    s.obj.write_backlog[0] = rest.unbind();
                    s.write_buffer_size -= count;
                });
            } else {
                let done = this.st.with(py, |s| {
                    s.write_buffer_size -= len;
                    s.obj.write_backlog.pop_front()
                });
                drop(done);
            }
        }
        Self::process_outgoing(slf)
    }

    fn process_outgoing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !this.st.with(py, |s| s.ssl_writing_paused) {
            if let Some(outgoing) = obj!(this, py, outgoing) {
                let data = outgoing.call_method0(py, intern!(py, "read"))?.into_bound(py);
                if unsafe { ffi::PyBytes_Size(data.as_ptr()) } > 0 {
                    match (obj!(this, py, raw_core), obj!(this, py, transport)) {
                        (Some(core), _) => StreamTransportCore::write(core.bind(py), &data)?,
                        (None, Some(t)) => drop(t.call_method1(py, intern!(py, "write"), (data,))?),
                        (None, None) => {}
                    }
                }
            }
        }
        Self::control_app_writing(slf)
    }

    // -- incoming ---------------------------------------------------------

    /// Hands received bytes to the TLS engine (no Python code runs).
    pub fn feed(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        let Some(incoming) = obj!(self, py, incoming).filter(|_| !data.is_empty()) else { return Ok(()) };
        let view = unsafe {
            let ptr = ffi::PyMemoryView_FromMemory(data.as_ptr() as *mut _, data.len() as ffi::Py_ssize_t, ffi::PyBUF_READ);
            Bound::from_owned_ptr_or_err(py, ptr)?
        };
        let written = incoming.call_method1(py, intern!(py, "write"), (&view,));
        release_view(view)?;
        written.map(drop)
    }

    /// What `buffer_updated` does once the bytes are in the engine.
    pub fn incoming_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        match slf.get().phase(slf.py()) {
            Phase::DoHandshake => Self::do_handshake(slf),
            Phase::Wrapped => Self::do_read(slf),
            Phase::Flushing => Self::do_flush(slf),
            Phase::Shutdown => Self::do_shutdown(slf),
            Phase::Unwrapped => Ok(()),
        }
    }

    fn do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !matches!(this.phase(py), Phase::Wrapped | Phase::Flushing) {
            return Ok(());
        }
        let result = (|| {
            let (paused, buffered) = this.st.with(py, |s| (s.app_reading_paused, s.app_buffered));
            if !paused {
                if buffered {
                    Self::do_read_buffered(slf)?;
                } else {
                    Self::do_read_copied(slf)?;
                }
                if this.st.with(py, |s| !s.obj.write_backlog.is_empty()) {
                    Self::do_write(slf)?;
                } else {
                    Self::process_outgoing(slf)?;
                }
            }
            Self::control_ssl_reading(slf)
        })();
        match result {
            Err(e) if is_exception(py, &e) => Self::fatal_error(slf, e.value(py).as_any(), "Fatal error on SSL protocol"),
            other => other,
        }
    }

    /// True when a `read()` could only raise SSLWantReadError: no decrypted
    /// bytes wait and the incoming BIO is empty. Not reading then spares
    /// building that exception (with its formatted message): asyncio's read
    /// after each record, at the end of the handshake and at EOF each built
    /// one, two per TLS connection that uvloop does not build.
    fn drained(&self, py: Python<'_>, io: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.read_buffer_size(py)? == 0 && io.call_method0(intern!(py, "pending"))?.extract::<usize>()? == 0)
    }

    /// Decrypts what the engine holds into the reused buffer, record after
    /// record, and gives the protocol one exactly sized bytes. asyncio asks
    /// `read()` for a new 256 KiB bytes per record instead; allocations that
    /// size come from mmap, and mapping, shrinking and unmapping each one
    /// cost more than the decryption.
    fn do_read_copied(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let io = this.ssl_io(py)?;
        let mut close_notify = false;
        let data = PLAINTEXT.with(|cell| -> PyResult<Option<ReadBytes>> {
            let mut buf = cell.borrow_mut();
            if buf.len() < MAX_SIZE {
                buf.resize(MAX_SIZE, 0);
            }
            let mut filled = 0usize;
            while filled < MAX_SIZE && !this.drained(py, &io)? {
                let got = if this.native_engine {
                    let view = unsafe {
                        let ptr = ffi::PyMemoryView_FromMemory(
                            buf.as_mut_ptr().add(filled).cast(),
                            (MAX_SIZE - filled) as ffi::Py_ssize_t,
                            ffi::PyBUF_WRITE,
                        );
                        Bound::from_owned_ptr_or_err(py, ptr)?
                    };
                    let got = io.call_method1(intern!(py, "read"), (MAX_SIZE - filled, &view));
                    release_view(view)?;
                    got.and_then(|n| n.extract::<usize>())
                } else {
                    // asyncio's call: `read(max_size)`, a bytes per record.
                    io.call_method1(intern!(py, "read"), (MAX_SIZE - filled,))
                        .and_then(|chunk| copy_chunk(&chunk, &mut buf[filled..]))
                };
                match got {
                    Ok(n) => {
                        if n == 0 {
                            close_notify = true;
                            break;
                        }
                        filled += n;
                    }
                    Err(e) if is_again(py, &e)? => break,
                    Err(e) => return Err(e),
                }
            }
            (filled > 0).then(|| ReadBytes::copy(py, &buf[..filled])).transpose()
        })?;
        if let Some(data) = data {
            this.count(py, data.len(), 0);
            data.deliver(py, obj!(this, py, app_protocol))?;
        }
        if close_notify {
            Self::call_eof_received(slf)?;
            Self::start_shutdown(slf)?;
        }
        Ok(())
    }

    fn do_read_buffered(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let io = this.ssl_io(py)?;
        let (Some(get_buffer), Some(buffer_updated)) = (obj!(this, py, app_get_buffer), obj!(this, py, app_buffer_updated)) else {
            return Ok(());
        };
        if this.drained(py, &io)? {
            return Ok(());
        }
        let buf = get_buffer.call1(py, (this.read_buffer_size(py)?,))?.into_bound(py);
        let wants = buf.len()?;
        let view = PyMemoryView::from(&buf)?;
        let mut offset = 0usize;
        let mut count = 1usize;
        let mut read_again = false;
        let outcome = (|| -> PyResult<()> {
            count = io.call_method1(intern!(py, "read"), (wants, &view))?.extract()?;
            if count > 0 {
                offset = count;
                while offset < wants {
                    let rest = view.get_item(PySlice::new(py, offset as isize, wants as isize, 1))?;
                    count = io.call_method1(intern!(py, "read"), (wants - offset, rest))?.extract()?;
                    if count == 0 {
                        return Ok(());
                    }
                    offset += count;
                }
                // The protocol's buffer filled up: more may be waiting.
                read_again = true;
            }
            Ok(())
        })();
        match outcome {
            Err(e) if !is_again(py, &e)? => return Err(e),
            _ => {}
        }
        if read_again {
            this.call_soon(py, slf.getattr(intern!(py, "_do_read"))?, None)?;
        }
        if offset > 0 {
            this.count(py, offset, 0);
            buffer_updated.call1(py, (offset,))?;
        }
        if count == 0 {
            Self::call_eof_received(slf)?;
            Self::start_shutdown(slf)?;
        }
        Ok(())
    }

    fn call_eof_received(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.st.with(py, |s| s.app_phase) != AppPhase::ConMade {
            return Ok(());
        }
        this.st.with(py, |s| s.app_phase = AppPhase::Eof);
        let Some(protocol) = obj!(this, py, app_protocol) else { return Ok(()) };
        match protocol.call_method0(py, intern!(py, "eof_received")).and_then(|r| r.bind(py).is_truthy()) {
            Ok(true) => drop(logger(py)?.call_method1("warning", ("returning true from eof_received() has no effect when using ssl",))?),
            Ok(false) => {}
            Err(e) if is_fatal(py, &e) => return Err(e),
            Err(e) => Self::fatal_error(slf, e.value(py).as_any(), "Error calling eof_received()")?,
        }
        Ok(())
    }

    // -- flow control -----------------------------------------------------

    fn control_app_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let size = this.write_buffer_size(py)?;
        let call = this.st.with(py, |s| {
            let limits = s.outgoing_limits;
            if size >= limits.high && !s.app_writing_paused {
                s.app_writing_paused = true;
                Some("pause_writing")
            } else if size <= limits.low && s.app_writing_paused {
                s.app_writing_paused = false;
                Some("resume_writing")
            } else {
                None
            }
        });
        let (Some(method), Some(protocol)) = (call, obj!(this, py, app_protocol)) else { return Ok(()) };
        match protocol.call_method0(py, method) {
            Ok(_) => Ok(()),
            Err(e) if is_fatal(py, &e) => Err(e),
            Err(e) => {
                let ctx = PyDict::new(py);
                ctx.set_item("message", format!("protocol.{}() failed", method))?;
                ctx.set_item("exception", e.value(py))?;
                ctx.set_item("transport", obj!(this, py, app_transport))?;
                ctx.set_item("protocol", slf)?;
                this.loop_.bind(py).call_method1(intern!(py, "call_exception_handler"), (ctx,))?;
                Ok(())
            }
        }
    }

    fn control_ssl_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let size = this.read_buffer_size(py)?;
        let call = this.st.with(py, |s| {
            let limits = s.incoming_limits;
            if size >= limits.high && !s.ssl_reading_paused {
                s.ssl_reading_paused = true;
                Some("pause_reading")
            } else if size <= limits.low && s.ssl_reading_paused {
                s.ssl_reading_paused = false;
                Some("resume_reading")
            } else {
                None
            }
        });
        if let (Some(method), Some(t)) = (call, obj!(this, py, transport)) {
            t.call_method0(py, method)?;
        }
        Ok(())
    }
}

#[pymethods]
impl TLSProtocolCore {
    /// Built by `ferroloop._tls`, which checks the arguments as asyncio does
    /// and wraps the BIOs: `sslobj` reads `incoming` and writes `outgoing`.
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        loop_: Py<LoopCore>,
        app_protocol: &Bound<'_, PyAny>,
        sslcontext: &Bound<'_, PyAny>,
        sslobj: &Bound<'_, PyAny>,
        incoming: Py<PyAny>,
        outgoing: Py<PyAny>,
        waiter: Option<Py<PyAny>>,
        call_connection_made: bool,
        ssl_handshake_timeout: Py<PyAny>,
        ssl_shutdown_timeout: Py<PyAny>,
    ) -> PyResult<Self> {
        let plain = sslobj.get_type().is(imported(py, &SSL_OBJECT, "ssl", "SSLObject")?);
        let ssl_io = if plain { sslobj.getattr("_sslobj")? } else { sslobj.clone() };
        let native_engine = ssl_io.get_type().is(imported(py, &NATIVE_ENGINE, "_ssl", "_SSLSocket")?);
        let extra = PyDict::new(py);
        extra.set_item("sslcontext", sslcontext)?;
        let mut incoming_limits = FlowControl::default();
        let mut outgoing_limits = FlowControl::default();
        incoming_limits.set_limits_from(None, None, HIGH_WATER_READ).map_err(PyRuntimeError::new_err)?;
        outgoing_limits.set_limits_from(None, None, HIGH_WATER_WRITE).map_err(PyRuntimeError::new_err)?;
        let core = TLSProtocolCore {
            loop_,
            handshake_timeout: ssl_handshake_timeout,
            shutdown_timeout: ssl_shutdown_timeout,
            native_engine,
            st: GilCell::new(State {
                obj: Objects {
                    waiter,
                    sslobj: Some(sslobj.clone().unbind()),
                    ssl_io: Some(ssl_io.unbind()),
                    incoming: Some(incoming),
                    outgoing: Some(outgoing),
                    extra: Some(extra.unbind()),
                    ..Objects::default()
                },
                phase: Phase::Unwrapped,
                app_phase: if call_connection_made { AppPhase::Init } else { AppPhase::ConMade },
                app_buffered: false,
                app_transport_created: false,
                write_buffer_size: 0,
                conn_lost: 0,
                ssl_writing_paused: false,
                app_reading_paused: false,
                ssl_reading_paused: false,
                app_writing_paused: false,
                eof_received: false,
                incoming_limits,
                outgoing_limits,
                handshake_start: None,
            }),
        };
        core._set_app_protocol(py, app_protocol)?;
        Ok(core)
    }

    /// Called once, by `ferroloop._tls`, with the transport the application sees.
    fn _set_app_transport(&self, py: Python<'_>, transport: Py<PyAny>) -> PyResult<()> {
        if self.st.with(py, |s| std::mem::replace(&mut s.app_transport_created, true)) {
            return Err(PyRuntimeError::new_err("Creating _SSLProtocolTransport twice"));
        }
        drop(self.st.with(py, |s| s.obj.app_transport.replace(transport)));
        Ok(())
    }

    fn _set_app_protocol(&self, py: Python<'_>, app_protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        // isinstance first: for a plain Protocol, hasattr would build and
        // discard an AttributeError on every connection.
        let buffered = app_protocol.is_instance(imported(py, &BUFFERED_PROTOCOL, "asyncio.protocols", "BufferedProtocol")?)?
            && app_protocol.hasattr(intern!(py, "get_buffer"))?;
        let lookup = |name: &str| app_protocol.getattr(name).ok().map(Bound::unbind);
        let (get_buffer, buffer_updated) = if buffered {
            (lookup("get_buffer"), lookup("buffer_updated"))
        } else {
            (None, None)
        };
        let old = self.st.with(py, |s| {
            s.app_buffered = buffered;
            (
                s.obj.app_protocol.replace(app_protocol.clone().unbind()),
                std::mem::replace(&mut s.obj.app_get_buffer, get_buffer),
                std::mem::replace(&mut s.obj.app_buffer_updated, buffer_updated),
            )
        });
        drop(old);
        Ok(())
    }

    // -- the protocol of the transport below ----------------------------------

    fn connection_made(slf: &Bound<'_, Self>, transport: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let raw_core = transport
            .getattr(intern!(py, "_core"))
            .ok()
            .and_then(|c| c.cast_into::<StreamTransportCore>().ok())
            .map(Bound::unbind);
        let old = slf.get().st.with(py, |s| {
            (s.obj.transport.replace(transport.clone().unbind()), std::mem::replace(&mut s.obj.raw_core, raw_core))
        });
        drop(old);
        Self::start_handshake(slf)
    }

    fn connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let backlog = this.st.with(py, |s| {
            s.write_buffer_size = 0;
            s.conn_lost += 1;
            std::mem::take(&mut s.obj.write_backlog)
        });
        drop(backlog);
        if let Some(outgoing) = obj!(this, py, outgoing) {
            outgoing.call_method0(py, intern!(py, "read"))?;
        }
        if let Some(t) = obj!(this, py, app_transport) {
            t.setattr(py, intern!(py, "_closed"), true)?;
        }
        if this.phase(py) != Phase::DoHandshake {
            let app_phase = this.st.with(py, |s| s.app_phase);
            if matches!(app_phase, AppPhase::ConMade | AppPhase::Eof) {
                this.st.with(py, |s| s.app_phase = AppPhase::ConLost);
                if let Some(p) = obj!(this, py, app_protocol) {
                    this.call_soon(py, p.bind(py).getattr(intern!(py, "connection_lost"))?, Some(&exc))?;
                }
            }
        }
        this.set_phase(py, Phase::Unwrapped)?;
        let dropped = this.st.with(py, |s| {
            (
                s.obj.transport.take(),
                s.obj.raw_core.take(),
                s.obj.app_transport.take(),
                s.obj.app_protocol.take(),
                s.obj.app_get_buffer.take(),
                s.obj.app_buffer_updated.take(),
            )
        });
        drop(dropped);
        let exc = if exc.is_none() { None } else { Some(&exc) };
        this.wakeup_waiter(py, exc)?;
        this.cancel_timeouts(py, true, true)
    }

    fn get_buffer(&self, py: Python<'_>, n: isize) -> PyResult<Py<PyAny>> {
        let want = if n <= 0 || n as usize > MAX_SIZE { MAX_SIZE } else { n as usize };
        let buf = match obj!(self, py, read_buffer) {
            Some(b) if b.bind(py).len()? >= want => b,
            _ => {
                let b = PyByteArray::new(py, &vec![0u8; want]).into_any().unbind();
                drop(self.st.with(py, |s| s.obj.read_buffer.replace(b.clone_ref(py))));
                b
            }
        };
        Ok(PyMemoryView::from(buf.bind(py))?.into_any().unbind())
    }

    fn buffer_updated(slf: &Bound<'_, Self>, nbytes: usize) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let Some(buf) = obj!(this, py, read_buffer) else {
            return Err(PyRuntimeError::new_err("buffer_updated() called before get_buffer()"));
        };
        let incoming = obj!(this, py, incoming);
        if let Some(incoming) = incoming {
            let view = PyMemoryView::from(buf.bind(py))?;
            let data = view.get_item(PySlice::new(py, 0, nbytes as isize, 1))?;
            incoming.call_method1(py, intern!(py, "write"), (data,))?;
        }
        Self::incoming_ready(slf)
    }

    fn eof_received(slf: &Bound<'_, Self>) -> PyResult<Option<bool>> {
        let py = slf.py();
        let this = slf.get();
        this.st.with(py, |s| s.eof_received = true);
        let result = (|| -> PyResult<Option<bool>> {
            if this.debug(py) {
                logger(py)?.call_method1("debug", ("%r received EOF", slf))?;
            }
            match this.phase(py) {
                Phase::DoHandshake => Self::on_handshake_complete(slf, Some(PyConnectionResetError::new_err(())))?,
                Phase::Wrapped => {
                    this.set_phase(py, Phase::Flushing)?;
                    if this.st.with(py, |s| s.app_reading_paused) {
                        return Ok(Some(true));
                    }
                    Self::do_flush(slf)?;
                }
                Phase::Flushing => {
                    Self::do_write(slf)?;
                    this.set_phase(py, Phase::Shutdown)?;
                    Self::do_shutdown(slf)?;
                }
                Phase::Shutdown => Self::do_shutdown(slf)?,
                Phase::Unwrapped => {}
            }
            Ok(None)
        })();
        if let Err(e) = &result {
            if is_exception(py, e) {
                if let Some(t) = obj!(this, py, transport) {
                    t.call_method0(py, intern!(py, "close"))?;
                }
            }
        }
        result
    }

    fn pause_writing(&self, py: Python<'_>) -> PyResult<()> {
        if self.st.with(py, |s| std::mem::replace(&mut s.ssl_writing_paused, true)) {
            return Err(PyAssertionError::new_err(()));
        }
        Ok(())
    }

    fn resume_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        if !slf.get().st.with(slf.py(), |s| std::mem::replace(&mut s.ssl_writing_paused, false)) {
            return Err(PyAssertionError::new_err(()));
        }
        Self::process_outgoing(slf)
    }

    // -- what the application's transport calls ---------------------------------

    /// The application transport's `write`, bound onto it.
    fn _app_write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if !(data.is_instance_of::<PyBytes>() || data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>()) {
            return Err(PyTypeError::new_err(format!("data: expecting a bytes-like instance, got {}", data.get_type().name()?)));
        }
        if data.len()? == 0 {
            return Ok(());
        }
        Self::write_appdata(slf, std::iter::once(Ok(data.clone())))
    }

    fn _write_appdata(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        // A closed layer drops the data without iterating it, as asyncio's.
        if matches!(slf.get().phase(slf.py()), Phase::Flushing | Phase::Shutdown | Phase::Unwrapped) {
            return Self::write_appdata(slf, std::iter::empty());
        }
        Self::write_appdata(slf, list_of_data.try_iter()?)
    }

    fn _start_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::start_shutdown(slf)
    }

    #[pyo3(signature = (exc=None))]
    fn _abort(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let exc = exc.unwrap_or_else(|| slf.py().None().into_bound(slf.py()));
        Self::abort(slf, exc)
    }

    #[pyo3(signature = (name, default=None))]
    fn _get_extra_info(&self, py: Python<'_>, name: &Bound<'_, PyAny>, default: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        if let Some(extra) = obj!(self, py, extra) {
            if let Some(v) = extra.bind(py).get_item(name)? {
                return Ok(v.unbind());
            }
        }
        match obj!(self, py, transport) {
            Some(t) => t.call_method1(py, intern!(py, "get_extra_info"), (name, default)),
            None => Ok(default.unwrap_or_else(|| py.None())),
        }
    }

    fn _pause_reading(&self, py: Python<'_>) {
        self.st.with(py, |s| s.app_reading_paused = true)
    }

    fn _resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.st.with(py, |s| std::mem::replace(&mut s.app_reading_paused, false)) {
            this.call_soon(py, slf.getattr(intern!(py, "_resume_app_reading"))?, None)?;
        }
        Ok(())
    }

    /// Scheduled by `_resume_reading`: picks up where the paused reads left off.
    fn _resume_app_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        match slf.get().phase(slf.py()) {
            Phase::Wrapped => Self::do_read(slf),
            Phase::Flushing => Self::do_flush(slf),
            Phase::Shutdown => Self::do_shutdown(slf),
            _ => Ok(()),
        }
    }

    fn _do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_read(slf)
    }

    fn _check_handshake_timeout(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if slf.get().phase(py) != Phase::DoHandshake {
            return Ok(());
        }
        let timeout = slf.get().handshake_timeout.bind(py).str()?;
        let msg = format!("SSL handshake is taking longer than {} seconds: aborting the connection", timeout);
        let exc = PyConnectionAbortedError::new_err(msg).into_value(py).into_bound(py).into_any();
        Self::fatal_error(slf, &exc, "Fatal error on transport")
    }

    /// Whether the transport underneath is closing (the application's
    /// transport says it is closing then too, from Python 3.14 on).
    fn _is_transport_closing(&self, py: Python<'_>) -> PyResult<bool> {
        match obj!(self, py, transport) {
            Some(t) => t.bind(py).call_method0(intern!(py, "is_closing"))?.is_truthy(),
            None => Ok(false),
        }
    }

    fn _check_shutdown_timeout(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !matches!(this.phase(py), Phase::Flushing | Phase::Shutdown) {
            return Ok(());
        }
        if let Some(t) = obj!(this, py, transport) {
            let exc = imported(py, &TIMEOUT, "asyncio.exceptions", "TimeoutError")?.call1(("SSL shutdown timed out",))?;
            t.call_method1(py, intern!(py, "_force_close"), (exc,))?;
        }
        Ok(())
    }

    #[pyo3(signature = (high=None, low=None))]
    fn _set_write_buffer_limits(&self, py: Python<'_>, high: Option<i64>, low: Option<i64>) -> PyResult<()> {
        self.st
            .with(py, |s| s.outgoing_limits.set_limits_from(high, low, HIGH_WATER_WRITE))
            .map_err(pyo3::exceptions::PyValueError::new_err)
    }

    #[pyo3(signature = (high=None, low=None))]
    fn _set_read_buffer_limits(&self, py: Python<'_>, high: Option<i64>, low: Option<i64>) -> PyResult<()> {
        self.st
            .with(py, |s| s.incoming_limits.set_limits_from(high, low, HIGH_WATER_READ))
            .map_err(pyo3::exceptions::PyValueError::new_err)
    }

    fn _control_app_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::control_app_writing(slf)
    }

    fn _control_ssl_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::control_ssl_reading(slf)
    }

    fn _get_write_buffer_size(&self, py: Python<'_>) -> PyResult<usize> {
        self.write_buffer_size(py)
    }

    fn _get_read_buffer_size(&self, py: Python<'_>) -> PyResult<usize> {
        self.read_buffer_size(py)
    }

    /// For asyncio's test helper `_test__append_write_backlog`.
    fn _append_write_backlog(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let n = data.len()?;
        self.st.with(py, |s| {
            s.obj.write_backlog.push_back(data.clone().unbind());
            s.write_buffer_size += n;
        });
        Ok(())
    }

    #[getter]
    fn _app_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        obj!(self, py, app_protocol)
    }

    #[getter]
    fn _app_transport(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        obj!(self, py, app_transport)
    }

    #[getter]
    fn _transport(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        obj!(self, py, transport)
    }

    #[getter]
    fn _sslobj(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        obj!(self, py, sslobj)
    }

    /// The incoming `MemoryBIO`, which `start_tls` fills with what a
    /// stream reader had already received.
    #[getter]
    fn _incoming(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        obj!(self, py, incoming)
    }

    #[getter]
    fn _extra(&self, py: Python<'_>) -> Option<Py<PyDict>> {
        obj!(self, py, extra)
    }

    /// asyncio's SSLProtocol keeps these, and libraries read them.
    #[getter]
    fn _sslcontext(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match obj!(self, py, extra) {
            Some(extra) => Ok(extra.bind(py).get_item("sslcontext")?.map(Bound::unbind)),
            None => Ok(None),
        }
    }

    #[getter]
    fn _ssl_handshake_timeout(&self, py: Python<'_>) -> Py<PyAny> {
        self.handshake_timeout.clone_ref(py)
    }

    #[getter]
    fn _ssl_shutdown_timeout(&self, py: Python<'_>) -> Py<PyAny> {
        self.shutdown_timeout.clone_ref(py)
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Py<LoopCore> {
        self.loop_.clone_ref(py)
    }

    #[getter]
    fn _outgoing(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        obj!(self, py, outgoing)
    }

    #[getter]
    fn _app_protocol_is_buffer(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.app_buffered)
    }

    /// Read off the `SSLObject`, which knows them (None once it is gone).
    #[getter]
    fn _server_side(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        obj!(self, py, sslobj).map(|o| o.getattr(py, intern!(py, "server_side"))).transpose()
    }

    #[getter]
    fn _server_hostname(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        obj!(self, py, sslobj).map(|o| o.getattr(py, intern!(py, "server_hostname"))).transpose()
    }

    #[getter]
    fn _state(&self, py: Python<'_>) -> &'static str {
        self.phase(py).name()
    }

    #[getter]
    fn _app_reading_paused(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.app_reading_paused)
    }

    #[getter]
    fn _app_writing_paused(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.app_writing_paused)
    }

    #[getter]
    fn _ssl_writing_paused(&self, py: Python<'_>) -> bool {
        self.st.with(py, |s| s.ssl_writing_paused)
    }

    #[getter]
    fn _outgoing_high_water(&self, py: Python<'_>) -> usize {
        self.st.with(py, |s| s.outgoing_limits.high)
    }

    #[getter]
    fn _outgoing_low_water(&self, py: Python<'_>) -> usize {
        self.st.with(py, |s| s.outgoing_limits.low)
    }

    #[getter]
    fn _incoming_high_water(&self, py: Python<'_>) -> usize {
        self.st.with(py, |s| s.incoming_limits.high)
    }

    #[getter]
    fn _incoming_low_water(&self, py: Python<'_>) -> usize {
        self.st.with(py, |s| s.incoming_limits.low)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.handshake_timeout)?;
        visit.call(&self.shutdown_timeout)?;
        // SAFETY: called by the garbage collector only.
        let o = &unsafe { self.st.peek_for_gc() }.obj;
        for f in [
            &o.app_protocol, &o.app_get_buffer, &o.app_buffer_updated, &o.app_transport, &o.transport,
            &o.waiter, &o.sslobj, &o.ssl_io, &o.incoming, &o.outgoing, &o.read_buffer, &o.handshake_timeout_handle,
            &o.shutdown_timeout_handle,
        ] {
            visit.call(f)?;
        }
        visit.call(&o.raw_core)?;
        visit.call(&o.extra)?;
        for d in &o.write_backlog {
            visit.call(d)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let o = self.st.with(py, |s| std::mem::take(&mut s.obj));
            drop(o);
        })
    }
}

static SSL_CONTEXT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static MEMORY_BIO: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SSL_PROTOCOL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SSL_TRANSPORT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static DEFAULT_HANDSHAKE_TIMEOUT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static DEFAULT_SHUTDOWN_TIMEOUT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static CREATE_TRANSPORT_CONTEXT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// asyncio's `SSLProtocol(...)`: the TLS layer (`ferroloop._tls.SSLProtocol`)
/// with its `SSLTransport`, after asyncio's checks, defaults and errors.
/// Native because a TLS server builds one per connection.
#[pyfunction]
#[pyo3(signature = (loop_, app_protocol, sslcontext, waiter, server_side, server_hostname=None,
                    call_connection_made=true, ssl_handshake_timeout=None, ssl_shutdown_timeout=None))]
#[allow(clippy::too_many_arguments)]
pub fn new_ssl_protocol<'py>(
    loop_: &Bound<'py, PyAny>,
    app_protocol: &Bound<'py, PyAny>,
    sslcontext: &Bound<'py, PyAny>,
    waiter: Option<&Bound<'py, PyAny>>,
    server_side: &Bound<'py, PyAny>,
    server_hostname: Option<&Bound<'py, PyAny>>,
    call_connection_made: bool,
    ssl_handshake_timeout: Option<&Bound<'py, PyAny>>,
    ssl_shutdown_timeout: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = loop_.py();
    // The object itself goes to `wrap_bio`, which refuses what asyncio's
    // call of it refuses; everything else wants its truth.
    let server_side_arg = server_side;
    let server_side = server_side.is_truthy()?;
    let memory_bio = imported(py, &MEMORY_BIO, "ssl", "MemoryBIO").map_err(|_| PyRuntimeError::new_err("stdlib ssl module not available"))?;
    let handshake_timeout = positive_or_default(py, ssl_handshake_timeout, &DEFAULT_HANDSHAKE_TIMEOUT, "ssl_handshake_timeout", "SSL_HANDSHAKE_TIMEOUT")?;
    let shutdown_timeout = positive_or_default(py, ssl_shutdown_timeout, &DEFAULT_SHUTDOWN_TIMEOUT, "ssl_shutdown_timeout", "SSL_SHUTDOWN_TIMEOUT")?;
    let server_hostname = server_hostname.filter(|h| !h.is_none());
    let sslcontext = if sslcontext.is_truthy()? {
        sslcontext.clone()
    } else {
        imported(py, &CREATE_TRANSPORT_CONTEXT, "asyncio.sslproto", "_create_transport_context")?.call1((server_side, server_hostname))?
    };
    let incoming = memory_bio.call0()?;
    let outgoing = memory_bio.call0()?;
    let hostname = match server_hostname {
        Some(h) if !server_side && h.is_truthy()? => Some(h),
        _ => None,
    };
    let sslobj = wrap_bio(&sslcontext, &incoming, &outgoing, server_side_arg, hostname)?;
    let protocol = imported(py, &SSL_PROTOCOL, "ferroloop._tls", "SSLProtocol")?.call1((
        loop_,
        app_protocol,
        &sslcontext,
        sslobj,
        incoming,
        outgoing,
        waiter,
        call_connection_made,
        handshake_timeout,
        shutdown_timeout,
    ))?;
    // `SSLTransport` has no __init__ of its own: these are its attributes.
    let transport = new_instance(imported(py, &SSL_TRANSPORT, "ferroloop._tls", "SSLTransport")?.cast::<PyType>()?)?;
    transport.setattr(intern!(py, "_closed"), false)?;
    transport.setattr(intern!(py, "_loop"), loop_)?;
    transport.setattr(intern!(py, "_ssl_protocol"), &protocol)?;
    // The hot path: the layer's own method, no Python frame.
    transport.setattr(intern!(py, "write"), protocol.getattr(intern!(py, "_app_write"))?)?;
    protocol.cast::<TLSProtocolCore>()?.get()._set_app_transport(py, transport.unbind())?;
    Ok(protocol)
}

/// A timeout argument: asyncio's default for None, else it must be positive.
fn positive_or_default<'py>(
    py: Python<'py>,
    value: Option<&Bound<'py, PyAny>>,
    default: &'static PyOnceLock<Py<PyAny>>,
    what: &str,
    constant: &str,
) -> PyResult<Bound<'py, PyAny>> {
    match value {
        Some(v) if !v.is_none() => {
            if v.le(0)? {
                return Err(PyValueError::new_err(format!("{what} should be a positive number, got {}", v.str()?)));
            }
            Ok(v.clone())
        }
        _ => imported(py, default, "asyncio.constants", constant).cloned(),
    }
}

/// `sslcontext.wrap_bio(incoming, outgoing, ...)`. For a context whose
/// class keeps `ssl`'s own `wrap_bio` and `SSLObject`, and no hostname to
/// encode, the same steps without ssl.py's three Python frames.
fn wrap_bio<'py>(
    ctx: &Bound<'py, PyAny>,
    incoming: &Bound<'py, PyAny>,
    outgoing: &Bound<'py, PyAny>,
    server_side: &Bound<'py, PyAny>,
    hostname: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = ctx.py();
    let ssl_object = imported(py, &SSL_OBJECT, "ssl", "SSLObject")?;
    let cls = ctx.get_type();
    // `wrap_bio` first: an object that is no context fails on it, as in asyncio.
    let stock = hostname.is_none()
        && cls.getattr(intern!(py, "wrap_bio")).is_ok_and(|w| {
            imported(py, &SSL_CONTEXT, "ssl", "SSLContext")
                .and_then(|c| c.getattr(intern!(py, "wrap_bio")))
                .is_ok_and(|stock| w.is(&stock))
        })
        && cls.getattr(intern!(py, "sslobject_class"))?.is(ssl_object);
    let kwargs = PyDict::new(py);
    if !stock {
        kwargs.set_item(intern!(py, "server_side"), server_side)?;
        kwargs.set_item(intern!(py, "server_hostname"), hostname)?;
        return ctx.call_method(intern!(py, "wrap_bio"), (incoming, outgoing), Some(&kwargs));
    }
    let sslobj = new_instance(ssl_object.cast::<PyType>()?)?;
    kwargs.set_item(intern!(py, "owner"), &sslobj)?;
    let engine = ctx.call_method(intern!(py, "_wrap_bio"), (incoming, outgoing, server_side, py.None()), Some(&kwargs))?;
    sslobj.setattr(intern!(py, "_sslobj"), engine)?;
    Ok(sslobj)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    RAW_RECEIVER.get_or_init(py, || RawReceiver {
        class: py.get_type::<TLSProtocolCore>().unbind(),
        feed: |layer, data| layer.cast::<TLSProtocolCore>()?.get().feed(layer.py(), data),
        ready: |layer| TLSProtocolCore::incoming_ready(layer.cast::<TLSProtocolCore>()?),
    });
    m.add_class::<TLSProtocolCore>()?;
    m.add_function(wrap_pyfunction!(new_ssl_protocol, m)?)
}
