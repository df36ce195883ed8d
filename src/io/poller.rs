//! The poll: a thin epoll wrapper that remembers what the kernel was told.
//!
//! Readiness is level-triggered, as asyncio's selectors are: a reader keeps
//! being reported every iteration while its fd stays readable.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

pub const READABLE: u8 = 1;
pub const WRITABLE: u8 = 2;

pub type Events = Vec<libc::epoll_event>;

pub struct Poller {
    epfd: OwnedFd,
    /// Interest the kernel holds for each fd, indexed by fd.
    registered: Vec<u8>,
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn epoll_mask(interest: u8) -> u32 {
    let mut m = 0;
    if interest & READABLE != 0 {
        m |= libc::EPOLLIN as u32;
    }
    if interest & WRITABLE != 0 {
        m |= libc::EPOLLOUT as u32;
    }
    m
}

/// Errors and hang-ups wake both directions, as `selectors.EpollSelector` does,
/// so the callback sees the error on its next recv/send.
fn ready_mask(events: u32) -> u8 {
    let mut m = 0;
    if events & !(libc::EPOLLIN as u32) != 0 {
        m |= WRITABLE;
    }
    if events & !(libc::EPOLLOUT as u32) != 0 {
        m |= READABLE;
    }
    m
}

impl Poller {
    pub fn new() -> io::Result<Self> {
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Poller { epfd: unsafe { OwnedFd::from_raw_fd(fd) }, registered: Vec::new() })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.epfd.as_raw_fd()
    }

    /// Interest currently registered for `fd` (0 when none).
    pub fn interest(&self, fd: RawFd) -> u8 {
        self.registered.get(fd as usize).copied().unwrap_or(0)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, interest: u8) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: epoll_mask(interest), u64: fd as u64 };
        cvt(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    /// Makes the kernel watch `fd` for exactly `interest` (0 stops watching).
    pub fn set_interest(&mut self, fd: RawFd, interest: u8) -> io::Result<()> {
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        let old = self.interest(fd);
        if old == interest {
            return Ok(());
        }
        if interest == 0 {
            // The fd may already be closed, which removed it from the set.
            let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0);
        } else if old == 0 {
            match self.ctl(libc::EPOLL_CTL_ADD, fd, interest) {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    self.ctl(libc::EPOLL_CTL_MOD, fd, interest)?
                }
                r => r?,
            }
        } else {
            // A closed-and-reused fd number is no longer in the set: add it.
            match self.ctl(libc::EPOLL_CTL_MOD, fd, interest) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    self.ctl(libc::EPOLL_CTL_ADD, fd, interest)?
                }
                r => r?,
            }
        }
        let idx = fd as usize;
        if idx >= self.registered.len() {
            self.registered.resize(idx + 1, 0);
        }
        self.registered[idx] = interest;
        Ok(())
    }

    /// Forgets every registration (the epoll fd itself stays open).
    pub fn forget_all(&mut self) {
        for fd in 0..self.registered.len() {
            if self.registered[fd] != 0 {
                let _ = self.ctl(libc::EPOLL_CTL_DEL, fd as RawFd, 0);
            }
        }
        self.registered.clear();
    }
}

/// Waits for readiness on `epfd`, filling `events`. `None` waits for ever.
/// Needs no GIL: the caller releases it around this call. An interrupted wait
/// returns `ErrorKind::Interrupted` so the caller can run signal handlers.
pub fn wait(epfd: RawFd, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
    let ms: libc::c_int = match timeout {
        None => -1,
        // Round up, so a timer is never woken for before it is due.
        Some(d) => {
            let ms = (d.as_nanos() + 999_999) / 1_000_000;
            ms.min(i32::MAX as u128) as libc::c_int
        }
    };
    if events.capacity() == 0 {
        events.reserve(256);
    }
    events.clear();
    let n = cvt(unsafe {
        libc::epoll_wait(epfd, events.as_mut_ptr(), events.capacity() as libc::c_int, ms)
    })?;
    // SAFETY: the kernel initialised the first n entries.
    unsafe { events.set_len(n as usize) };
    Ok(())
}

/// The fd and readiness (READABLE | WRITABLE) of one reported event.
#[inline]
pub fn decode(ev: &libc::epoll_event) -> (RawFd, u8) {
    let data = ev.u64;
    let events = ev.events;
    (data as RawFd, ready_mask(events))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) }, 0);
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn poll(p: &Poller, ms: u64) -> Vec<(RawFd, u8)> {
        let mut evs = Events::new();
        wait(p.raw_fd(), &mut evs, Some(Duration::from_millis(ms))).unwrap();
        evs.iter().map(decode).collect()
    }

    #[test]
    fn reports_readable_level_triggered() {
        let (r, w) = pipe();
        let mut p = Poller::new().unwrap();
        p.set_interest(r.as_raw_fd(), READABLE).unwrap();
        assert!(poll(&p, 0).is_empty());
        assert_eq!(unsafe { libc::write(w.as_raw_fd(), b"x".as_ptr().cast(), 1) }, 1);
        // Level-triggered: reported again while unread.
        for _ in 0..2 {
            assert_eq!(poll(&p, 100), vec![(r.as_raw_fd(), READABLE)]);
        }
    }

    #[test]
    fn modify_and_remove_interest() {
        let (r, w) = pipe();
        let mut p = Poller::new().unwrap();
        p.set_interest(w.as_raw_fd(), WRITABLE).unwrap();
        assert_eq!(poll(&p, 100), vec![(w.as_raw_fd(), WRITABLE)]);
        p.set_interest(w.as_raw_fd(), 0).unwrap();
        assert!(poll(&p, 0).is_empty());
        assert_eq!(p.interest(w.as_raw_fd()), 0);
        drop(r);
    }

    #[test]
    fn hangup_wakes_a_reader() {
        let (r, w) = pipe();
        let mut p = Poller::new().unwrap();
        p.set_interest(r.as_raw_fd(), READABLE).unwrap();
        drop(w);
        assert_eq!(poll(&p, 100), vec![(r.as_raw_fd(), READABLE | WRITABLE)]);
    }

    #[test]
    fn reused_fd_number_is_registered_again() {
        let mut p = Poller::new().unwrap();
        let (r, w) = pipe();
        let num = r.as_raw_fd();
        p.set_interest(num, READABLE).unwrap();
        // Put another pipe's read end at the same number (dup2 closes the
        // old one, which drops it from the epoll set), as a closed-and-reused
        // fd would be; dup2 keeps parallel tests from taking the number.
        let (r2, w2) = pipe();
        assert_eq!(unsafe { libc::dup2(r2.as_raw_fd(), num) }, num);
        std::mem::forget(r);
        let reused = unsafe { OwnedFd::from_raw_fd(num) };
        p.set_interest(num, READABLE | WRITABLE).unwrap();
        assert_eq!(unsafe { libc::write(w2.as_raw_fd(), b"x".as_ptr().cast(), 1) }, 1);
        assert_eq!(poll(&p, 100), vec![(num, READABLE)]);
        drop((w, r2, reused));
    }

    #[test]
    fn bad_fd_is_an_error() {
        let mut p = Poller::new().unwrap();
        assert!(p.set_interest(-1, READABLE).is_err());
        assert!(p.set_interest(9999, READABLE).is_err());
        assert_eq!(p.interest(9999), 0);
    }
}
