//! I/O below the transports: the poll, the wake-up pipe, raw socket and file calls and their errors, read buffers, literal address resolution.

pub mod poller;
pub mod waker;
pub mod sock_io;
pub mod sock_ops;
pub mod fs_ops;
pub mod os_error;
pub mod read_bytes;
pub mod literal_addrinfo;
pub mod sock_addr;
