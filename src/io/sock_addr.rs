//! Socket addresses converted as the `socket` module converts them: a raw
//! `sockaddr` to the Python tuple (or Unix path) `recvfrom` / `accept`
//! return, with `inet_ntop` and the same tuple shapes, and a Python address
//! that needs no resolution back to a raw one for `sendto`. Shared by the
//! datagram transport, the accept loop and literal address resolution.

use crate::io::os_error;
use crate::io::sock_io::errno;
use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

/// A raw socket address, as `recvfrom` fills it and `sendto` takes it.
#[derive(Clone, Copy)]
pub(crate) struct SockAddr {
    pub(crate) storage: libc::sockaddr_storage,
    pub(crate) len: libc::socklen_t,
}

impl SockAddr {
    pub(crate) fn zeroed() -> Self {
        SockAddr { storage: unsafe { std::mem::zeroed() }, len: std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t }
    }

    fn bytes(&self) -> &[u8] {
        let n = (self.len as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
        unsafe { std::slice::from_raw_parts((&self.storage as *const libc::sockaddr_storage).cast::<u8>(), n) }
    }

    pub(crate) fn same(&self, other: &SockAddr) -> bool {
        self.len == other.len && self.bytes() == other.bytes()
    }
}

unsafe extern "C" {
    // glibc's, which the socket module uses too (not in the libc crate).
    fn inet_ntop(af: libc::c_int, src: *const libc::c_void, dst: *mut libc::c_char, size: libc::socklen_t) -> *const libc::c_char;
    pub(crate) fn inet_pton(af: libc::c_int, src: *const libc::c_char, dst: *mut libc::c_void) -> libc::c_int;
}


fn ntop(family: i32, src: *const libc::c_void) -> Option<String> {
    let mut buf = [0 as libc::c_char; 64];
    let p = unsafe { inet_ntop(family, src, buf.as_mut_ptr(), buf.len() as libc::socklen_t) };
    if p.is_null() {
        return None;
    }
    let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(s.to_string_lossy().into_owned())
}

/// The Python address of a raw one, as `socket.recvfrom` returns it.
pub(crate) fn make_address(py: Python<'_>, sa: &SockAddr) -> PyResult<Py<PyAny>> {
    if sa.len == 0 {
        return Ok(py.None());
    }
    let family = sa.storage.ss_family as i32;
    let ptr = (&sa.storage as *const libc::sockaddr_storage).cast::<u8>();
    match family {
        libc::AF_INET => {
            let a = unsafe { &*(ptr.cast::<libc::sockaddr_in>()) };
            let host = ntop(libc::AF_INET, (&a.sin_addr as *const libc::in_addr).cast())
                .ok_or_else(|| os_error::from_errno(py, errno()))?;
            Ok(PyTuple::new(py, [host.into_pyobject(py)?.into_any(), u16::from_be(a.sin_port).into_pyobject(py)?.into_any()])?
                .into_any()
                .unbind())
        }
        libc::AF_INET6 => {
            let a = unsafe { &*(ptr.cast::<libc::sockaddr_in6>()) };
            let host = ntop(libc::AF_INET6, (&a.sin6_addr as *const libc::in6_addr).cast())
                .ok_or_else(|| os_error::from_errno(py, errno()))?;
            Ok(PyTuple::new(
                py,
                [
                    host.into_pyobject(py)?.into_any(),
                    u16::from_be(a.sin6_port).into_pyobject(py)?.into_any(),
                    u32::from_be(a.sin6_flowinfo).into_pyobject(py)?.into_any(),
                    a.sin6_scope_id.into_pyobject(py)?.into_any(),
                ],
            )?
            .into_any()
            .unbind())
        }
        libc::AF_UNIX => {
            let a = unsafe { &*(ptr.cast::<libc::sockaddr_un>()) };
            let offset = std::mem::offset_of!(libc::sockaddr_un, sun_path);
            let path_len = (sa.len as usize).saturating_sub(offset).min(a.sun_path.len());
            let path = unsafe { std::slice::from_raw_parts(a.sun_path.as_ptr().cast::<u8>(), path_len) };
            if path_len > 0 && path[0] == 0 {
                // Linux's abstract namespace: the raw bytes.
                return Ok(PyBytes::new(py, path).into_any().unbind());
            }
            // A NUL-terminated path, decoded as the file system encoding.
            let end = path.iter().position(|&b| b == 0).unwrap_or(path_len);
            unsafe {
                Ok(Bound::from_owned_ptr_or_err(
                    py,
                    ffi::PyUnicode_DecodeFSDefaultAndSize(path.as_ptr().cast(), end as ffi::Py_ssize_t),
                )?
                .unbind())
            }
        }
        _ => Err(PyValueError::new_err("unsupported address family")),
    }
}

fn exact_port(obj: &Bound<'_, PyAny>, max: i64) -> Option<i64> {
    if !obj.is_exact_instance_of::<pyo3::types::PyInt>() {
        return None;
    }
    let v: i64 = obj.extract().ok()?;
    (0..=max).contains(&v).then_some(v)
}

/// The raw form of a Python address when it needs no resolution and no
/// error message (a numeric IP host, a Unix path); `None` sends it through
/// the socket's own `sendto` instead.
pub(crate) fn parse_address(family: i32, addr: &Bound<'_, PyAny>) -> Option<SockAddr> {
    let mut sa = SockAddr::zeroed();
    match family {
        libc::AF_INET | libc::AF_INET6 => {
            let t = addr.cast_exact::<PyTuple>().ok()?;
            let n = t.len();
            let ok_len = if family == libc::AF_INET { n == 2 } else { (2..=4).contains(&n) };
            if !ok_len {
                return None;
            }
            let host = t.get_item(0).ok()?;
            let host = host.cast_exact::<PyString>().ok()?;
            let host = std::ffi::CString::new(host.to_str().ok()?).ok()?;
            let port = exact_port(&t.get_item(1).ok()?, 0xffff)? as u16;
            let ptr = (&mut sa.storage as *mut libc::sockaddr_storage).cast::<u8>();
            if family == libc::AF_INET {
                let a = unsafe { &mut *(ptr.cast::<libc::sockaddr_in>()) };
                if unsafe { inet_pton(libc::AF_INET, host.as_ptr(), (&mut a.sin_addr as *mut libc::in_addr).cast()) } != 1 {
                    return None;
                }
                a.sin_family = libc::AF_INET as libc::sa_family_t;
                a.sin_port = port.to_be();
                sa.len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            } else {
                let flowinfo = if n > 2 { exact_port(&t.get_item(2).ok()?, 0xfffff)? as u32 } else { 0 };
                let scope_id = if n > 3 { exact_port(&t.get_item(3).ok()?, u32::MAX as i64)? as u32 } else { 0 };
                let a = unsafe { &mut *(ptr.cast::<libc::sockaddr_in6>()) };
                if unsafe { inet_pton(libc::AF_INET6, host.as_ptr(), (&mut a.sin6_addr as *mut libc::in6_addr).cast()) } != 1 {
                    return None;
                }
                a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                a.sin6_port = port.to_be();
                a.sin6_flowinfo = flowinfo.to_be();
                a.sin6_scope_id = scope_id;
                sa.len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            }
            Some(sa)
        }
        libc::AF_UNIX => {
            let encoded;
            let path: &[u8] = if let Ok(s) = addr.cast_exact::<PyString>() {
                encoded = unsafe { Bound::from_owned_ptr_or_err(addr.py(), ffi::PyUnicode_EncodeFSDefault(s.as_ptr())).ok()? };
                encoded.cast::<PyBytes>().ok()?.as_bytes()
            } else if let Ok(b) = addr.cast_exact::<PyBytes>() {
                b.as_bytes()
            } else {
                return None;
            };
            let ptr = (&mut sa.storage as *mut libc::sockaddr_storage).cast::<u8>();
            let a = unsafe { &mut *(ptr.cast::<libc::sockaddr_un>()) };
            let offset = std::mem::offset_of!(libc::sockaddr_un, sun_path);
            let abstract_ns = path.is_empty() || path[0] == 0;
            // Too long: the socket module raises its own error.
            if path.len() > a.sun_path.len() || (!abstract_ns && path.len() == a.sun_path.len()) {
                return None;
            }
            a.sun_family = libc::AF_UNIX as libc::sa_family_t;
            for (d, s) in a.sun_path.iter_mut().zip(path) {
                *d = *s as libc::c_char;
            }
            sa.len = (offset + path.len() + usize::from(!abstract_ns)) as libc::socklen_t;
            Some(sa)
        }
        _ => None,
    }
}
