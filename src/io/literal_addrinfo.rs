//! `getaddrinfo`'s answer for a literal address, built without asking libc.
//!
//! glibc's `getaddrinfo` costs 13-27 us even for `'127.0.0.1'` (it reads its
//! configuration and takes locks before it looks at the host), and every
//! `create_connection` asks it. For the requests whose answer follows from
//! the arguments alone -- an IPv4 or IPv6 literal, a numeric port, the
//! families, socket types, protocols and flags below -- this builds the very
//! list `socket.getaddrinfo` returns: the same entries in glibc's order, the
//! same enum members, addresses formatted as the socket module formats them.
//! Anything else (a name, a scope id, `AI_ADDRCONFIG`, an unusual type or
//! protocol, an out-of-range port) returns None and `_resolver.py` asks
//! `socket.getaddrinfo`, so its results and errors stay libc's own.
//! tests/test_resolver.py holds the two equal over a matrix of inputs.

use crate::io::sock_addr::{inet_pton, make_address, SockAddr};
use crate::loop_core::gil_cell::GilCell;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyString, PyTuple};

const AI_PASSIVE: i64 = libc::AI_PASSIVE as i64;
const AI_CANONNAME: i64 = libc::AI_CANONNAME as i64;
const AI_NUMERICHOST: i64 = libc::AI_NUMERICHOST as i64;
const AI_NUMERICSERV: i64 = libc::AI_NUMERICSERV as i64;
/// Flags that change nothing for a literal host and a numeric port.
/// (`AI_ADDRCONFIG` depends on the machine's interfaces, `AI_V4MAPPED` /
/// `AI_ALL` rewrite addresses: those go to libc.)
const PLAIN_FLAGS: i64 = AI_PASSIVE | AI_CANONNAME | AI_NUMERICHOST | AI_NUMERICSERV;

const STREAM: i64 = libc::SOCK_STREAM as i64;
const DGRAM: i64 = libc::SOCK_DGRAM as i64;
const RAW: i64 = libc::SOCK_RAW as i64;
const TCP: i64 = libc::IPPROTO_TCP as i64;
const UDP: i64 = libc::IPPROTO_UDP as i64;

/// A literal host, in network byte order.
#[derive(Debug, PartialEq, Eq)]
pub enum Literal {
    V4([u8; 4]),
    V6([u8; 16]),
}

/// The address `host` spells, when glibc's `getaddrinfo` reads it the same
/// way: IPv4 only as four decimal parts without leading zeros (glibc reads
/// `010.0.0.1` as octal, `1.2.3` as 1.2.0.3: left to it), IPv6 as
/// `inet_pton` reads it, without a scope id.
pub fn parse_host(host: &[u8], family: i64) -> Option<Literal> {
    if host.is_empty() || host.len() > 45 || host.contains(&0) {
        return None;
    }
    let mut text = [0u8; 46];
    text[..host.len()].copy_from_slice(host);
    if (family == 0 || family == libc::AF_INET as i64) && is_dotted_quad(host) {
        let mut out = [0u8; 4];
        let ok = unsafe { inet_pton(libc::AF_INET, text.as_ptr().cast(), out.as_mut_ptr().cast()) };
        return (ok == 1).then_some(Literal::V4(out));
    }
    if (family == 0 || family == libc::AF_INET6 as i64) && host.contains(&b':') && !host.contains(&b'%') {
        let mut out = [0u8; 16];
        let ok = unsafe { inet_pton(libc::AF_INET6, text.as_ptr().cast(), out.as_mut_ptr().cast()) };
        return (ok == 1).then_some(Literal::V6(out));
    }
    None
}

fn is_dotted_quad(host: &[u8]) -> bool {
    let mut parts = 0;
    for part in host.split(|&b| b == b'.') {
        parts += 1;
        let decimal = !part.is_empty() && part.len() <= 3 && part.iter().all(u8::is_ascii_digit);
        if !decimal || (part.len() > 1 && part[0] == b'0') {
            return false;
        }
        if part.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')) > 255 {
            return false;
        }
    }
    parts == 4
}

/// A service given as one to five ASCII digits, up to 65535.
pub fn parse_port(port: &[u8]) -> Option<u16> {
    if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
        return None;
    }
    u16::try_from(port.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))).ok()
}

/// The (type, proto) entries glibc answers for a requested (type, proto), in its order.
pub fn entries(type_: i64, proto: i64) -> Option<&'static [(i64, i64)]> {
    const BOTH: &[(i64, i64)] = &[(STREAM, TCP), (DGRAM, UDP), (RAW, 0)];
    const STREAM_TCP: &[(i64, i64)] = &[(STREAM, TCP)];
    const DGRAM_UDP: &[(i64, i64)] = &[(DGRAM, UDP)];
    match (type_, proto) {
        (0, 0) => Some(BOTH),
        (0, TCP) | (STREAM, 0) | (STREAM, TCP) => Some(STREAM_TCP),
        (0, UDP) | (DGRAM, 0) | (DGRAM, UDP) => Some(DGRAM_UDP),
        _ => None,
    }
}

/// A plain int argument (an `int` or an `IntEnum`, not a bool), when it fits.
fn small_int(obj: &Bound<'_, PyAny>) -> Option<i64> {
    let p = obj.as_ptr();
    if unsafe { ffi::PyLong_Check(p) == 0 || ffi::PyBool_Check(p) != 0 } {
        return None;
    }
    obj.extract::<i64>().ok()
}

/// The bytes of an exact `str` (ASCII) or `bytes` argument.
fn ascii<'a>(obj: &'a Bound<'_, PyAny>) -> Option<&'a [u8]> {
    let p = obj.as_ptr();
    unsafe {
        if ffi::PyBytes_CheckExact(p) != 0 {
            let len = ffi::PyBytes_Size(p) as usize;
            return Some(std::slice::from_raw_parts(ffi::PyBytes_AsString(p).cast::<u8>(), len));
        }
        if ffi::PyUnicode_CheckExact(p) != 0 {
            let mut len: ffi::Py_ssize_t = 0;
            let data = ffi::PyUnicode_AsUTF8AndSize(p, &mut len);
            if data.is_null() {
                ffi::PyErr_Clear();
                return None;
            }
            let text = std::slice::from_raw_parts(data.cast::<u8>(), len as usize);
            return text.is_ascii().then_some(text);
        }
    }
    None
}

static ENUMS: PyOnceLock<[Py<PyAny>; 5]> = PyOnceLock::new();

/// What a request spells: the host's bytes (a literal is at most 45), the
/// port, and family, type, proto, flags.
#[derive(PartialEq, Eq, Clone, Copy)]
struct Request {
    host: [u8; 46],
    len: u8,
    port: u16,
    ints: [i64; 4],
}

impl Request {
    fn new(text: &[u8], port: u16, ints: [i64; 4]) -> Option<Request> {
        let mut host = [0; 46];
        host.get_mut(..text.len())?.copy_from_slice(text);
        Some(Request { host, len: text.len() as u8, port, ints })
    }
}

/// Answers already built, the most recently asked first: a program asks for
/// the same few addresses again and again (each `create_connection` to its
/// database, say), so the usual lookup ends at the first entry, without
/// hashing or allocating. The entries are immutable tuples, so a new list
/// of the same ones is the same answer.
static ANSWERS: GilCell<Vec<(Request, Vec<Py<PyAny>>)>> = GilCell::new(Vec::new());
const ANSWERS_KEPT: usize = 64;

/// A new list of the answer to `request`, if it was built before.
fn known_answer<'py>(py: Python<'py>, request: &Request) -> Option<PyResult<Bound<'py, PyList>>> {
    ANSWERS.with(py, |answers| {
        let i = answers.iter().position(|(r, _)| r == request)?;
        answers[..=i].rotate_right(1);
        Some(PyList::new(py, answers[0].1.iter().map(|e| e.bind(py))))
    })
}

/// `socket.AddressFamily` / `socket.SocketKind` members, as getaddrinfo returns them.
fn enums(py: Python<'_>) -> PyResult<&[Py<PyAny>; 5]> {
    ENUMS.get_or_try_init(py, || {
        let socket = py.import("socket")?;
        let family = socket.getattr("AddressFamily")?;
        let kind = socket.getattr("SocketKind")?;
        Ok([
            family.call1((libc::AF_INET,))?.unbind(),
            family.call1((libc::AF_INET6,))?.unbind(),
            kind.call1((libc::SOCK_STREAM,))?.unbind(),
            kind.call1((libc::SOCK_DGRAM,))?.unbind(),
            kind.call1((libc::SOCK_RAW,))?.unbind(),
        ])
    })
}

fn sockaddr(literal: &Literal, port: u16) -> SockAddr {
    let mut sa = SockAddr::zeroed();
    let storage = (&mut sa.storage as *mut libc::sockaddr_storage).cast::<u8>();
    match literal {
        Literal::V4(octets) => {
            let a = unsafe { &mut *storage.cast::<libc::sockaddr_in>() };
            a.sin_family = libc::AF_INET as libc::sa_family_t;
            a.sin_port = port.to_be();
            a.sin_addr.s_addr = u32::from_ne_bytes(*octets);
            sa.len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        }
        Literal::V6(octets) => {
            let a = unsafe { &mut *storage.cast::<libc::sockaddr_in6>() };
            a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            a.sin6_port = port.to_be();
            a.sin6_addr.s6_addr = *octets;
            sa.len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        }
    }
    sa
}

/// `socket.getaddrinfo(host, port, family, type, proto, flags)` for a
/// literal host, or None when that call has to answer it.
#[pyfunction]
fn literal_addrinfo<'py>(
    host: &Bound<'py, PyAny>,
    port: &Bound<'py, PyAny>,
    family: &Bound<'py, PyAny>,
    r#type: &Bound<'py, PyAny>,
    proto: &Bound<'py, PyAny>,
    flags: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyList>>> {
    let py = host.py();
    let (Some(family), Some(type_), Some(proto), Some(flags)) =
        (small_int(family), small_int(r#type), small_int(proto), small_int(flags))
    else {
        return Ok(None);
    };
    if flags & !PLAIN_FLAGS != 0 {
        return Ok(None);
    }
    let Some(kinds) = entries(type_, proto) else { return Ok(None) };
    let port = if port.is_none() {
        0
    } else if unsafe { ffi::PyLong_CheckExact(port.as_ptr()) } != 0 {
        match port.extract::<u16>() {
            Ok(p) => p,
            Err(_) => return Ok(None),
        }
    } else {
        match ascii(port).and_then(parse_port) {
            Some(p) => p,
            None => return Ok(None),
        }
    };
    let Some(text) = ascii(host) else { return Ok(None) };
    // Longer than any literal: a name, for libc.
    let Some(request) = Request::new(text, port, [family, type_, proto, flags]) else { return Ok(None) };
    if let Some(list) = known_answer(py, &request) {
        return list.map(Some);
    }
    let Some(literal) = parse_host(text, family) else { return Ok(None) };
    let enums = enums(py)?;
    let af = match literal {
        Literal::V4(_) => &enums[0],
        Literal::V6(_) => &enums[1],
    };
    let address = make_address(py, &sockaddr(&literal, port))?;
    let empty = PyString::new(py, "");
    let canonname = if flags & AI_CANONNAME != 0 {
        // SAFETY: `text` is ASCII.
        PyString::new(py, unsafe { std::str::from_utf8_unchecked(text) })
    } else {
        empty.clone()
    };
    let mut entries = Vec::with_capacity(kinds.len());
    for (i, &(kind, protocol)) in kinds.iter().enumerate() {
        let kind = match kind {
            STREAM => &enums[2],
            DGRAM => &enums[3],
            _ => &enums[4],
        };
        let name = if i == 0 { &canonname } else { &empty };
        entries.push(
            PyTuple::new(
                py,
                [af.bind(py).clone(), kind.bind(py).clone(), protocol.into_pyobject(py)?.into_any(), name.clone().into_any(), address.bind(py).clone()],
            )?
            .into_any()
            .unbind(),
        );
    }
    let list = PyList::new(py, entries.iter().map(|e| e.bind(py)))?;
    let evicted = ANSWERS.with(py, |answers| {
        let evicted = (answers.len() >= ANSWERS_KEPT).then(|| answers.pop());
        answers.insert(0, (request, entries));
        evicted
    });
    // Released once the cell is let go of.
    drop(evicted);
    Ok(Some(list))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(literal_addrinfo, m)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_only_as_glibc_reads_it() {
        assert_eq!(parse_host(b"127.0.0.1", 0), Some(Literal::V4([127, 0, 0, 1])));
        assert_eq!(parse_host(b"255.255.255.255", 2), Some(Literal::V4([255; 4])));
        for odd in [&b"010.0.0.1"[..], b"1.2.3", b"256.1.1.1", b" 1.2.3.4", b"1.2.3.4 ", b"1..2.3", b"", b"1.2.3.4.5"] {
            assert_eq!(parse_host(odd, 0), None, "{odd:?}");
        }
        assert_eq!(parse_host(b"127.0.0.1", libc::AF_INET6 as i64), None);
    }

    #[test]
    fn ipv6_without_scope_ids() {
        let mut loopback = [0u8; 16];
        loopback[15] = 1;
        assert_eq!(parse_host(b"::1", 0), Some(Literal::V6(loopback)));
        assert_eq!(parse_host(b"::0001", libc::AF_INET6 as i64), Some(Literal::V6(loopback)));
        assert_eq!(parse_host(b"fe80::1%lo", 0), None);
        assert_eq!(parse_host(b"1::2::3", 0), None);
        assert_eq!(parse_host(b"::1", libc::AF_INET as i64), None);
    }

    #[test]
    fn ports_are_up_to_five_digits_within_range() {
        assert_eq!(parse_port(b"80"), Some(80));
        assert_eq!(parse_port(b"080"), Some(80));
        assert_eq!(parse_port(b"65535"), Some(65535));
        for odd in [&b""[..], b"65536", b"99999", b"123456", b" 80", b"+80", b"http"] {
            assert_eq!(parse_port(odd), None, "{odd:?}");
        }
    }

    #[test]
    fn entries_follow_glibc_order() {
        assert_eq!(entries(0, 0), Some(&[(STREAM, TCP), (DGRAM, UDP), (RAW, 0)][..]));
        assert_eq!(entries(STREAM, 0), Some(&[(STREAM, TCP)][..]));
        assert_eq!(entries(0, UDP), Some(&[(DGRAM, UDP)][..]));
        assert_eq!(entries(DGRAM, TCP), None);
        assert_eq!(entries(RAW, 0), None);
    }
}
