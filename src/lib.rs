//! ferroloop's native core. See ARCHITECTURE.md for the map of files.

pub mod flow_control;
pub mod fs_ops;
pub mod gil_cell;
pub mod handle;
pub mod literal_addrinfo;
pub mod event_loop;
pub mod fastcall;
pub mod accept;
pub mod datagram_transport;
pub mod os_error;
pub mod pipe_transport;
pub mod poller;
pub mod read_bytes;
pub mod sock_io;
pub mod sock_ops;
pub mod stream_transport;
pub mod timer_heap;
pub mod tls_protocol;
pub mod transport_core;
pub mod waker;

use pyo3::prelude::*;

// The native core counts on the GIL (gil_cell.rs): a free-threaded Python
// turns its GIL back on when it imports this module, and says so.
#[pymodule(gil_used = true)]
fn _ferroloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The package's version is Cargo.toml's, the one source maturin also
    // writes into the wheel's metadata.
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    handle::register(m)?;
    m.add_class::<event_loop::LoopCore>()?;
    fastcall::install::<event_loop::CallSoon>(m.py())?;
    if m.py().version_info() >= (3, 14) {
        fastcall::install::<event_loop::CreateTaskPassingKeywords>(m.py())?;
    } else {
        fastcall::install::<event_loop::CreateTask>(m.py())?;
    }
    sock_ops::register(m)?;
    transport_core::register(m)?;
    stream_transport::register(m)?;
    accept::register(m)?;
    datagram_transport::register(m)?;
    pipe_transport::register(m)?;
    tls_protocol::register(m)?;
    fs_ops::register(m)?;
    literal_addrinfo::register(m)?;
    Ok(())
}
