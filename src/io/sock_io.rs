//! Non-blocking socket calls on raw fds, shared by the `sock_*` fast paths
//! and the stream transports: no BlockingIOError is raised for "not ready",
//! and real errors become the OSError subclass the `socket` module raises.

use crate::io::os_error;
use crate::io::read_bytes::ReadBytes;
use pyo3::ffi;
use pyo3::prelude::*;
use std::os::fd::RawFd;

pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub fn would_block(e: i32) -> bool {
    e == libc::EAGAIN || e == libc::EWOULDBLOCK || e == libc::EINTR
}


/// Outcome of one non-blocking socket call.
pub enum Attempt<T> {
    Done(T),
    NotReady,
    Failed(PyErr),
}

impl<T> Attempt<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Attempt<U> {
        match self {
            Attempt::Done(v) => Attempt::Done(f(v)),
            Attempt::NotReady => Attempt::NotReady,
            Attempt::Failed(e) => Attempt::Failed(e),
        }
    }
}

/// Reads at least this large go straight into their bytes object when the
/// kernel says how much is waiting (`pending_bytes`): one FIONREAD costs
/// less than copying such a read out of the reused buffer.
pub const DIRECT_READ_MIN: usize = 32 * 1024;

/// What a read or write syscall returned: how many bytes, "not ready", or
/// the OSError the `socket` / `os` module would raise.
pub fn outcome(py: Python<'_>, ret: isize) -> Attempt<usize> {
    if ret >= 0 {
        return Attempt::Done(ret as usize);
    }
    let e = errno();
    if would_block(e) {
        Attempt::NotReady
    } else {
        Attempt::Failed(os_error::from_errno(py, e))
    }
}

/// `outcome`, with the bytes count handed to `done`.
fn read_outcome<T>(py: Python<'_>, got: isize, done: impl FnOnce(usize) -> Attempt<T>) -> Attempt<T> {
    match outcome(py, got) {
        Attempt::Done(n) => done(n),
        Attempt::NotReady => Attempt::NotReady,
        Attempt::Failed(e) => Attempt::Failed(e),
    }
}

/// Reads up to `n` bytes with `read` into a bytes object, shrunk to what
/// arrived (empty at end of stream).
pub fn read_new_bytes(py: Python<'_>, n: usize, read: impl FnOnce(*mut libc::c_void, usize) -> isize) -> Attempt<ReadBytes> {
    let mut data = match ReadBytes::new(py, n) {
        Ok(data) => data,
        Err(e) => return Attempt::Failed(e),
    };
    let got = read(data.as_mut_ptr().cast(), n);
    read_outcome(py, got, |got| match data.truncate(py, got) {
        Ok(()) => Attempt::Done(data),
        Err(e) => Attempt::Failed(e),
    })
}

/// `recv(fd, n)` into a bytes object, as `socket.recv` does.
pub fn try_recv(py: Python<'_>, fd: RawFd, n: usize) -> Attempt<ReadBytes> {
    read_new_bytes(py, n, |buf, len| unsafe { libc::recv(fd, buf, len, libc::MSG_DONTWAIT) })
}

/// How many bytes the socket holds ready to read (FIONREAD); 0 when it
/// cannot tell.
pub fn pending_bytes(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if r < 0 { 0 } else { n.max(0) as usize }
}

/// One `send` of `data`, returning how much went out.
pub fn try_send(py: Python<'_>, fd: RawFd, data: &[u8]) -> Attempt<usize> {
    outcome(py, unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) })
}

/// A held buffer export (bytes, bytearray, memoryview, array…).
///
/// Exact `bytes`, the usual case, are immutable: a reference to the object
/// is all that is held, without the buffer protocol. Other exports keep
/// their `Py_buffer` inline, not boxed: every transport write makes one,
/// and a small heap block freed per write made the next large allocation
/// (the next read's bytes) consolidate malloc's fast bins. Moving the
/// struct is fine: CPython copies `Py_buffer`s itself.
pub enum HeldBuffer {
    Bytes(Py<PyAny>),
    View(ffi::Py_buffer),
}

// SAFETY: the buffer is only read and released with the GIL held.
unsafe impl Send for HeldBuffer {}
unsafe impl Sync for HeldBuffer {}

impl HeldBuffer {
    pub fn get(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        if unsafe { ffi::PyBytes_CheckExact(obj.as_ptr()) } != 0 {
            return Ok(HeldBuffer::Bytes(obj.clone().unbind()));
        }
        let mut view = std::mem::MaybeUninit::<ffi::Py_buffer>::uninit();
        if unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), ffi::PyBUF_SIMPLE) } < 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        // SAFETY: PyObject_GetBuffer filled it in.
        Ok(HeldBuffer::View(unsafe { view.assume_init() }))
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the object (or the export) is held, so the memory lives.
        let (ptr, len) = match self {
            HeldBuffer::Bytes(b) => unsafe { (ffi::PyBytes_AS_STRING(b.as_ptr()) as *const u8, ffi::PyBytes_Size(b.as_ptr())) },
            HeldBuffer::View(v) => (v.buf as *const u8, v.len),
        };
        if len == 0 {
            return &[];
        }
        unsafe { std::slice::from_raw_parts(ptr, len as usize) }
    }
}

impl Drop for HeldBuffer {
    fn drop(&mut self) {
        if let HeldBuffer::View(view) = self {
            Python::attach(|_| unsafe { ffi::PyBuffer_Release(view) });
        }
    }
}


thread_local! {
    /// The transports' read buffer, reused by every read on this thread.
    static SPARE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Reads up to `size` bytes with `read` into the reused buffer; `f` sees
/// what arrived (empty at end of stream) and must not call back into Python
/// code that reads.
pub fn read_spare<R>(
    py: Python<'_>,
    size: usize,
    read: impl FnOnce(*mut libc::c_void, usize) -> isize,
    f: impl FnOnce(&[u8]) -> R,
) -> Attempt<R> {
    SPARE.with(|spare| {
        let mut buf = spare.borrow_mut();
        if buf.len() < size {
            buf.resize(size, 0);
        }
        let got = read(buf.as_mut_ptr().cast(), size);
        read_outcome(py, got, |got| Attempt::Done(f(&buf[..got])))
    })
}

/// `recv(fd, size)` into the reused buffer, as `read_spare`.
pub fn recv_with<R>(py: Python<'_>, fd: RawFd, size: usize, f: impl FnOnce(&[u8]) -> R) -> Attempt<R> {
    read_spare(py, size, |buf, len| unsafe { libc::recv(fd, buf, len, libc::MSG_DONTWAIT) }, f)
}

/// Up to `size` bytes with `read` into an exactly sized bytes (empty at end
/// of stream): straight into it when `direct` and at least DIRECT_READ_MIN
/// bytes wait on `fd`, else copied out of the reused buffer. Allocating
/// `size` bytes per read and shrinking it costs more than the copy (large
/// blocks come from mmap, so every read would map, remap and fault fresh
/// pages).
pub fn read_sized(
    py: Python<'_>,
    fd: RawFd,
    size: usize,
    direct: bool,
    read: impl FnOnce(*mut libc::c_void, usize) -> isize,
) -> Attempt<ReadBytes> {
    match if direct { pending_bytes(fd) } else { 0 } {
        n if n >= DIRECT_READ_MIN => read_new_bytes(py, n.min(size), read),
        _ => match read_spare(py, size, read, |data| ReadBytes::copy(py, data)) {
            Attempt::Done(Ok(data)) => Attempt::Done(data),
            Attempt::Done(Err(e)) | Attempt::Failed(e) => Attempt::Failed(e),
            Attempt::NotReady => Attempt::NotReady,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::pending_bytes;

    fn socketpair() -> (i32, i32) {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) }, 0);
        (fds[0], fds[1])
    }

    #[test]
    fn pending_bytes_counts_what_waits_to_be_read() {
        let (a, b) = socketpair();
        assert_eq!(pending_bytes(a), 0);
        let data = [7u8; 5000];
        assert_eq!(unsafe { libc::write(b, data.as_ptr().cast(), data.len()) }, 5000);
        assert_eq!(pending_bytes(a), 5000);
        let mut buf = [0u8; 1000];
        assert_eq!(unsafe { libc::read(a, buf.as_mut_ptr().cast(), buf.len()) }, 1000);
        assert_eq!(pending_bytes(a), 4000);
        unsafe { libc::close(a) };
        unsafe { libc::close(b) };
    }

    #[test]
    fn pending_bytes_is_zero_for_a_bad_fd() {
        assert_eq!(pending_bytes(-1), 0);
    }
}
