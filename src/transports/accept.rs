//! A server's accept loop (`create_server`, `create_unix_server`).
//!
//! The listening socket's reader is an `Acceptor`, fired natively. Each time
//! the socket is readable it accepts connections with `accept4`
//! (non-blocking and close-on-exec from the start), wraps each in a
//! `socket.socket`, and makes its protocol and transport inside a copy of the
//! server's context, as asyncio's one task per accepted connection would. Like
//! asyncio it takes up to `backlog` per readiness, but for TCP it asks the
//! kernel how many are queued instead of calling `accept4` until `EAGAIN`:
//! Linux allocates the new socket and its file before it looks at the
//! queue, so the call that finds it empty costs most of a real accept
//! (about 4 us, a server's whole loop overhead for a connection), where
//! reading the queue's length (`TCP_INFO`) costs a tenth of that. Outside
//! debug mode each connection gets its `SocketTransport` built here (under
//! the TLS layer from `new_ssl_protocol` when serving TLS), with no
//! Python frame of the loop's: that path is what a server pays per
//! connection. Debug mode (which logs and reports) and loops that make their
//! own transports go through the loop's `_accept_connection2`; running out
//! of fds goes to its `_accept_paused`.

use crate::io::sock_addr::{make_address, SockAddr};
use crate::loop_core::event_loop::{fileobj_to_fd, LoopCore};
use crate::loop_core::handle::{is_fatal, Handle, NativeCallback};
use crate::io::os_error;
use crate::io::poller::READABLE;
use crate::io::sock_io::errno;
use crate::transports::stream_transport::{init_socket_transport, socket_kind};
use crate::transports::transport_core::new_instance;
use crate::transports::tls_protocol::new_ssl_protocol;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use pyo3::{PyTraverseError, PyVisit};
use std::os::fd::RawFd;

static SOCKET_CLASS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

#[pyclass(frozen, module = "ferroloop._ferroloop")]
pub struct Acceptor {
    loop_: Py<LoopCore>,
    fd: RawFd,
    /// How each accepted socket is described to `socket.socket`: the
    /// listening socket's family, type (plus SOCK_NONBLOCK, which accept4
    /// set) and protocol.
    kind: (i32, i32, i32),
    protocol_factory: Py<PyAny>,
    server: Py<PyAny>,
    /// The class of the transports built here; None when every connection
    /// takes the loop's Python path (a loop's own transports).
    transport_class: Option<Py<PyType>>,
    /// What `_start_serving` was given, for the loop's Python paths:
    /// (protocol_factory, sock, sslcontext, server, backlog,
    /// ssl_handshake_timeout, ssl_shutdown_timeout, context).
    serving: Py<PyTuple>,
    /// Each connection runs in a copy of this context: the server's (Python
    /// 3.15 captures it when the server is made), else the one current when
    /// serving began, as asyncio's reader of the listening socket copies it.
    context: Py<PyAny>,
    backlog: usize,
    /// A TCP listener, whose accept queue `TCP_INFO` reports.
    tcp: bool,
}

impl NativeCallback for Acceptor {
    fn fire(&self, py: Python<'_>) -> PyResult<()> {
        self.__call__(py)
    }
}

impl Acceptor {
    /// One connection, or None when none is waiting (or it went away
    /// before we took it, or accepting is paused for lack of fds).
    fn accept(&self, py: Python<'_>) -> PyResult<Option<(RawFd, Py<PyAny>)>> {
        let mut sa = SockAddr::zeroed();
        // SAFETY: accept4 writes at most `sa.len` bytes into `sa.storage`.
        let conn = unsafe {
            libc::accept4(self.fd, (&mut sa.storage as *mut libc::sockaddr_storage).cast(), &mut sa.len, libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
        };
        if conn < 0 {
            let e = errno();
            return match e {
                libc::EAGAIN | libc::EINTR | libc::ECONNABORTED => Ok(None),
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                    // The socket stays readable: the loop stops watching it
                    // for a while, or this would spin.
                    let mut args = vec![os_error::from_errno(py, e).into_value(py).into_any()];
                    args.extend(self.serving.bind(py).iter().map(Bound::unbind));
                    self.loop_.bind(py).call_method1(intern!(py, "_accept_paused"), PyTuple::new(py, args)?)?;
                    Ok(None)
                }
                _ => Err(os_error::from_errno(py, e)),
            };
        }
        self.loop_.get().count_accepted(py);
        match make_address(py, &sa) {
            Ok(addr) => Ok(Some((conn, addr))),
            Err(err) => {
                // SAFETY: our own fd, not yet handed to anything.
                unsafe { libc::close(conn) };
                Err(err)
            }
        }
    }

    fn wrap<'py>(&self, py: Python<'py>, conn: RawFd) -> PyResult<Bound<'py, PyAny>> {
        let (family, type_, proto) = self.kind;
        let made = SOCKET_CLASS.import(py, "socket", "socket").and_then(|cls| cls.call1((family, type_, proto, conn)));
        if made.is_err() {
            // SAFETY: no socket object took the fd.
            unsafe { libc::close(conn) };
        }
        made
    }

    /// The connection's protocol and transport, in the current context.
    fn connection(&self, py: Python<'_>, sock: &Bound<'_, PyAny>, addr: Py<PyAny>) -> PyResult<()> {
        let loop_ = self.loop_.bind(py);
        let extra = PyDict::new(py);
        extra.set_item(intern!(py, "peername"), addr)?;
        let transport_class = match &self.transport_class {
            Some(cls) if !loop_.get().debug(py) => cls.bind(py),
            _ => {
                let s = self.serving.bind(py);
                let args = (&self.protocol_factory, sock, extra, s.get_item(2)?, &self.server, s.get_item(5)?, s.get_item(6)?);
                loop_.call_method1(intern!(py, "_accept_connection2"), args)?;
                return Ok(());
            }
        };
        let serving = self.serving.bind(py);
        let built = self.protocol_factory.bind(py).call0().and_then(|protocol| {
            let sslcontext = serving.get_item(2)?;
            // With TLS the socket transport's protocol is the TLS layer.
            let protocol = if sslcontext.is_truthy()? {
                let server_side = pyo3::types::PyBool::new(py, true);
                let (handshake_timeout, shutdown_timeout) = (serving.get_item(5)?, serving.get_item(6)?);
                new_ssl_protocol(
                    loop_.as_any(),
                    &protocol,
                    &sslcontext,
                    None,
                    server_side.as_any(),
                    None,
                    true,
                    Some(&handshake_timeout),
                    Some(&shutdown_timeout),
                )?
            } else {
                protocol
            };
            let transport = new_instance(transport_class)?;
            init_socket_transport(&transport, loop_, sock, &protocol, None, Some(extra.into_any()), Some(self.server.bind(py)))
        });
        match built {
            Ok(()) => Ok(()),
            Err(e) => {
                // As the loop's Python path outside debug mode: the
                // connection is dropped, and nothing is reported.
                sock.call_method0(intern!(py, "close"))?;
                if is_fatal(py, &e) { Err(e) } else { Ok(()) }
            }
        }
    }
}

/// How many connections wait in a TCP listener's accept queue: Linux gives
/// it as `tcpi_unacked` for a socket in the LISTEN state. None when the
/// socket cannot say.
fn queued(fd: RawFd) -> Option<usize> {
    // SAFETY: a plain C struct, for getsockopt to fill in.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`.
    let r = unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, (&mut info as *mut libc::tcp_info).cast(), &mut len) };
    const TCP_LISTEN: u8 = 10;
    (r == 0 && info.tcpi_state == TCP_LISTEN).then_some(info.tcpi_unacked as usize)
}

#[pymethods]
impl Acceptor {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let mut budget = self.backlog;
        while budget > 0 {
            let Some((conn, addr)) = self.accept(py)? else { return Ok(()) };
            budget -= 1;
            let sock = self.wrap(py, conn)?;
            // SAFETY: a new reference or NULL with an exception set.
            let context = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_Copy(self.context.as_ptr()))? };
            // SAFETY: `context` is a Context; entered and left here.
            if unsafe { ffi::PyContext_Enter(context.as_ptr()) } != 0 {
                return Err(PyErr::fetch(py));
            }
            let made = self.connection(py, &sock, addr);
            // SAFETY: leaves the context entered above.
            if unsafe { ffi::PyContext_Exit(context.as_ptr()) } != 0 {
                return Err(PyErr::fetch(py));
            }
            made?;
            if self.tcp {
                match queued(self.fd) {
                    Some(0) => return Ok(()),
                    Some(n) => budget = budget.min(n),
                    None => {}
                }
            }
        }
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.protocol_factory)?;
        visit.call(&self.server)?;
        visit.call(&self.transport_class)?;
        visit.call(&self.serving)?;
        visit.call(&self.context)
    }
}

/// `loop._start_serving`: makes an `Acceptor` the reader of `sock`.
/// `transport_class` is None when connections must take the loop's Python
/// path (a loop subclass that makes its own transports); `context` is the
/// server's, or None for a copy of the current one. The loop's Python paths
/// get it back with the rest, so serving resumed after a pause keeps it.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn start_accepting(
    loop_: &Bound<'_, LoopCore>,
    protocol_factory: &Bound<'_, PyAny>,
    sock: &Bound<'_, PyAny>,
    sslcontext: &Bound<'_, PyAny>,
    server: &Bound<'_, PyAny>,
    backlog: i64,
    ssl_handshake_timeout: &Bound<'_, PyAny>,
    ssl_shutdown_timeout: &Bound<'_, PyAny>,
    transport_class: Option<Bound<'_, PyType>>,
    context: Option<Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = loop_.py();
    let fd = fileobj_to_fd(sock)?;
    let (family, type_, proto) = socket_kind(sock)?;
    let context = match context.filter(|c| !c.is_none()) {
        Some(c) => c,
        None => Handle::copy_current_context(py)?.into_bound(py),
    };
    let serving = PyTuple::new(
        py,
        [
            protocol_factory,
            sock,
            sslcontext,
            server,
            &backlog.into_pyobject(py)?.into_any(),
            ssl_handshake_timeout,
            ssl_shutdown_timeout,
            &context,
        ],
    )?;
    let acceptor = Acceptor {
        loop_: loop_.clone().unbind(),
        fd,
        kind: (family, type_ | libc::SOCK_NONBLOCK, proto),
        protocol_factory: protocol_factory.clone().unbind(),
        server: server.clone().unbind(),
        transport_class: transport_class.map(Bound::unbind),
        serving: serving.unbind(),
        context: context.unbind(),
        backlog: backlog.clamp(1, i64::from(i32::MAX)) as usize,
        tcp: matches!(family, libc::AF_INET | libc::AF_INET6) && type_ & 0xf == libc::SOCK_STREAM,
    };
    let handle = Handle::new_native(py, loop_.clone().unbind(), Py::new(py, acceptor)?)?;
    LoopCore::watch(loop_, fd, READABLE, handle)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Acceptor>()?;
    m.add_function(wrap_pyfunction!(start_accepting, m)?)?;
    Ok(())
}
