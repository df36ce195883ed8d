//! ferroloop's native core. See ARCHITECTURE.md for the map of files.

pub mod io;
pub mod loop_core;
pub mod transports;

use pyo3::prelude::*;

// The native core counts on the GIL (loop_core/gil_cell.rs): a free-threaded Python
// turns its GIL back on when it imports this module, and says so.
#[pymodule(gil_used = true)]
fn _ferroloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The package's version is Cargo.toml's, the one source maturin also
    // writes into the wheel's metadata.
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    loop_core::handle::register(m)?;
    m.add_class::<loop_core::event_loop::LoopCore>()?;
    loop_core::fastcall::install::<loop_core::event_loop::CallSoon>(m.py())?;
    if m.py().version_info() >= (3, 14) {
        loop_core::fastcall::install::<loop_core::event_loop::CreateTaskPassingKeywords>(m.py())?;
    } else {
        loop_core::fastcall::install::<loop_core::event_loop::CreateTask>(m.py())?;
    }
    io::sock_ops::register(m)?;
    transports::transport_core::register(m)?;
    transports::stream_transport::register(m)?;
    transports::accept::register(m)?;
    transports::datagram_transport::register(m)?;
    transports::pipe_transport::register(m)?;
    transports::tls_protocol::register(m)?;
    io::fs_ops::register(m)?;
    io::literal_addrinfo::register(m)?;
    Ok(())
}
