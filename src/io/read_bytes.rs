//! The bytes objects reads hand to `data_received`, with a one-object free
//! list.
//!
//! An echo or request/response server receives, passes on and drops a bytes
//! object per read. Above pymalloc's 512-byte limit each one is a glibc
//! malloc and free, past the tcache for anything over ~1 KiB: about a sixth of
//! the loop's own instructions per 1 KiB round trip. When the protocol has let
//! go of the object (we hold the only reference), nothing can observe it any
//! more, so the next read may refill it in place, as CPython's own
//! `_PyBytes_Resize` does to a bytes object nobody else holds.

use crate::loop_core::gil_cell::GilCell;
use pyo3::ffi;
use pyo3::prelude::*;

unsafe extern "C" {
    // Public in CPython's C API, not re-exported by pyo3-ffi.
    fn _PyBytes_Resize(bytes: *mut *mut ffi::PyObject, newsize: ffi::Py_ssize_t) -> std::os::raw::c_int;
}

/// Smaller bytes objects come from pymalloc's pools, already cheap.
const RECYCLE_MIN: usize = 512;

/// The object a protocol let go of last, waiting to be refilled.
static FREE: GilCell<Option<ReadBytes>> = GilCell::new(None);

/// A bytes object we hold the only reference to, and the room its allocation
/// has (at least its length).
pub struct ReadBytes {
    obj: Py<PyAny>,
    room: usize,
}

impl ReadBytes {
    /// A bytes object of length `n` whose contents the caller fills: the
    /// free list's when it has room for `n` and wastes at most half, so a
    /// protocol that keeps what it receives holds no more than twice it.
    pub fn new(py: Python<'_>, n: usize) -> PyResult<Self> {
        if n >= RECYCLE_MIN {
            let fits = |b: &mut ReadBytes| n <= b.room && b.room <= 2 * n;
            if let Some(mut b) = FREE.with(py, |f| f.take_if(fits)) {
                b.set_len(n);
                return Ok(b);
            }
        }
        // SAFETY: a NULL source asks CPython for an uninitialised object.
        let obj = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), n as ffi::Py_ssize_t) };
        let obj = unsafe { Bound::from_owned_ptr_or_err(py, obj) }?.unbind();
        Ok(ReadBytes { obj, room: n })
    }

    /// A copy of `data`.
    pub fn copy(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let mut b = Self::new(py, data.len())?;
        // SAFETY: the object has room for data.len() bytes and is ours alone.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), b.as_mut_ptr(), data.len()) };
        Ok(b)
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: a bytes object; its storage is ours to write (sole owner).
        unsafe { ffi::PyBytes_AS_STRING(self.obj.as_ptr()).cast_mut().cast() }
    }

    pub fn len(&self) -> usize {
        // SAFETY: a bytes object.
        unsafe { ffi::Py_SIZE(self.obj.as_ptr()) as usize }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn as_any(&self) -> &Py<PyAny> {
        &self.obj
    }

    /// Sets the length (≤ room) of an object we hold alone, with the
    /// terminating NUL and an unknown hash, as a fresh object has.
    fn set_len(&mut self, n: usize) {
        debug_assert!(n <= self.room);
        let p = self.obj.as_ptr().cast::<ffi::PyBytesObject>();
        // SAFETY: the room covers n bytes plus the terminator CPython
        // allocates; no one else holds the object, so no one sees it change.
        #[allow(deprecated)]
        unsafe {
            (*p).ob_base.ob_size = n as ffi::Py_ssize_t;
            (*p).ob_shash = -1;
            *(*p).ob_sval.as_mut_ptr().add(n) = 0;
        }
    }

    /// Keeps the first `got` bytes after a short read. Memory goes back
    /// (realloc) when less than half the room is used; nothing remains of an
    /// empty read but the shared empty bytes.
    pub fn truncate(&mut self, py: Python<'_>, got: usize) -> PyResult<()> {
        if got == self.len() {
            return Ok(());
        }
        if got * 2 >= self.room && got > 0 {
            self.set_len(got);
            return Ok(());
        }
        let mut ptr = std::mem::replace(&mut self.obj, py.None()).into_ptr();
        // SAFETY: we own the only reference; on failure CPython freed it.
        if unsafe { _PyBytes_Resize(&mut ptr, got as ffi::Py_ssize_t) } < 0 {
            return Err(PyErr::fetch(py));
        }
        self.obj = unsafe { Bound::from_owned_ptr(py, ptr) }.unbind();
        self.room = got;
        Ok(())
    }

    /// The object, for code that may keep it.
    pub fn into_any(self) -> Py<PyAny> {
        self.obj
    }

    /// Calls the protocol's `data_received` with the object, then gives it
    /// back. The method is looked up on every call, as asyncio's transports
    /// do: a protocol may rebind it on the instance or its class.
    pub fn deliver(self, py: Python<'_>, protocol: Option<Py<PyAny>>) -> PyResult<()> {
        let result = match protocol {
            Some(p) => p.call_method1(py, pyo3::intern!(py, "data_received"), (self.obj.bind(py),)).map(drop),
            None => Ok(()),
        };
        // An exception's traceback holds the frames that saw the object,
        // so a failed call never lets it be refilled under them.
        self.give_back(py);
        result
    }

    /// After the protocol saw the object: the next read refills it if the
    /// protocol kept no reference.
    pub fn give_back(self, py: Python<'_>) {
        if self.room >= RECYCLE_MIN && unsafe { ffi::Py_REFCNT(self.obj.as_ptr()) } == 1 {
            drop(FREE.replace(py, Some(self)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_python(f: impl FnOnce(Python<'_>)) {
        Python::initialize();
        Python::attach(f);
    }

    #[test]
    fn a_released_object_is_refilled_and_a_kept_one_is_not() {
        with_python(|py| {
            let a = ReadBytes::copy(py, &[1u8; 1000]).unwrap();
            let first = a.as_any().as_ptr();
            a.give_back(py);
            let b = ReadBytes::copy(py, &[2u8; 900]).unwrap();
            assert_eq!(b.as_any().as_ptr(), first, "refilled in place");
            assert_eq!(b.as_any().bind(py).extract::<Vec<u8>>().unwrap(), vec![2u8; 900]);
            let kept = b.as_any().clone_ref(py);
            b.give_back(py);
            let c = ReadBytes::copy(py, &[3u8; 900]).unwrap();
            assert_ne!(c.as_any().as_ptr(), first, "the kept object is not reused");
            assert_eq!(kept.bind(py).extract::<Vec<u8>>().unwrap(), vec![2u8; 900]);
        });
    }

    #[test]
    fn a_refilled_object_hashes_its_new_contents() {
        with_python(|py| {
            let a = ReadBytes::copy(py, &[1u8; 800]).unwrap();
            a.as_any().bind(py).hash().unwrap();
            a.give_back(py);
            let b = ReadBytes::copy(py, &[7u8; 800]).unwrap();
            let fresh = pyo3::types::PyBytes::new(py, &[7u8; 800]);
            assert_eq!(b.as_any().bind(py).hash().unwrap(), fresh.hash().unwrap());
        });
    }

    #[test]
    fn an_object_more_than_twice_too_big_is_not_reused() {
        with_python(|py| {
            let a = ReadBytes::copy(py, &[1u8; 4000]).unwrap();
            let first = a.as_any().as_ptr();
            a.give_back(py);
            let b = ReadBytes::copy(py, &[2u8; 1000]).unwrap();
            assert_ne!(b.as_any().as_ptr(), first);
            assert_eq!(b.len(), 1000);
        });
    }

    #[test]
    fn a_short_read_keeps_its_bytes_and_an_empty_one_gives_empty_bytes() {
        with_python(|py| {
            let mut a = ReadBytes::new(py, 1000).unwrap();
            unsafe { std::ptr::write_bytes(a.as_mut_ptr(), 5, 1000) };
            a.truncate(py, 700).unwrap();
            assert_eq!(a.as_any().bind(py).extract::<Vec<u8>>().unwrap(), vec![5u8; 700]);
            a.truncate(py, 10).unwrap();
            assert_eq!(a.as_any().bind(py).extract::<Vec<u8>>().unwrap(), vec![5u8; 10]);
            a.truncate(py, 0).unwrap();
            assert!(a.is_empty());
        });
    }
}
