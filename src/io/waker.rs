//! The self-pipe that wakes a sleeping poll.
//!
//! `call_soon_threadsafe` writes a zero byte; Python's C signal handler writes
//! the signal number (the write end is handed to `signal.set_wakeup_fd`), so
//! draining the pipe also tells which signals arrived.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub struct Waker {
    read: OwnedFd,
    write: OwnedFd,
}

impl Waker {
    pub fn new() -> io::Result<Self> {
        let mut fds = [0; 2];
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(unsafe { Waker { read: OwnedFd::from_raw_fd(fds[0]), write: OwnedFd::from_raw_fd(fds[1]) } })
    }

    pub fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    pub fn write_fd(&self) -> RawFd {
        self.write.as_raw_fd()
    }

    /// Wakes the poll. A full pipe already guarantees a wake-up, so EAGAIN is fine.
    pub fn wake(&self) {
        unsafe { libc::write(self.write.as_raw_fd(), [0u8].as_ptr().cast(), 1) };
    }

    /// Empties the pipe, appending every byte read (signal numbers, or 0 for
    /// plain wake-ups) to `out`.
    pub fn drain(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; 4096];
        loop {
            let n = unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                let err = io::Error::last_os_error();
                if n < 0 && err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_returns_every_byte_written() {
        let w = Waker::new().unwrap();
        w.wake();
        assert_eq!(unsafe { libc::write(w.write_fd(), [15u8].as_ptr().cast(), 1) }, 1);
        let mut out = vec![];
        w.drain(&mut out);
        assert_eq!(out, vec![0, 15]);
        out.clear();
        w.drain(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn wake_never_blocks_on_a_full_pipe() {
        let w = Waker::new().unwrap();
        for _ in 0..200_000 {
            w.wake();
        }
        let mut out = vec![];
        w.drain(&mut out);
        assert!(!out.is_empty());
    }
}
