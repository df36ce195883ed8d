//! The few file-system and file calls the loop itself makes that asyncio
//! makes from its own files: `stat` / `unlink` of a Unix server's socket
//! path and `sendfile`. Made here, natively, as uvloop makes them: a
//! blocking-call detector (blockbuster) lets asyncio's own frames make them
//! and would flag the same calls from ferroloop's Python files, failing
//! programs that pass on asyncio. They raise what `os.stat`, `os.unlink`
//! and `os.sendfile` raise, and release the GIL as those do.

use pyo3::ffi;
use pyo3::prelude::*;
use std::ffi::CString;
use std::os::fd::RawFd;
use pyo3::types::PyBytes;

/// `OSError` for the current errno, with the path as `filename`, as `os`'s
/// functions raise it.
fn path_error(py: Python<'_>, err: i32, path: &Bound<'_, PyAny>) -> PyErr {
    unsafe {
        *libc::__errno_location() = err;
        ffi::PyErr_SetFromErrnoWithFilenameObject(ffi::PyExc_OSError, path.as_ptr());
    }
    PyErr::fetch(py)
}

/// The path as the file system takes it (str, bytes or os.PathLike), with
/// `os.fsencode`'s rules and its error for an embedded NUL.
fn c_path(path: &Bound<'_, PyAny>) -> PyResult<CString> {
    let py = path.py();
    let mut out: *mut ffi::PyObject = std::ptr::null_mut();
    // SAFETY: on success `out` receives a new reference to a bytes object.
    if unsafe { ffi::PyUnicode_FSConverter(path.as_ptr(), (&mut out as *mut *mut ffi::PyObject).cast()) } == 0 {
        return Err(PyErr::fetch(py));
    }
    let bytes = unsafe { Bound::from_owned_ptr(py, out).cast_into_unchecked::<PyBytes>() };
    CString::new(bytes.as_bytes()).map_err(|_| pyo3::exceptions::PyValueError::new_err("embedded null byte"))
}

/// Runs a libc call returning -1 on error with the GIL released, retrying
/// on EINTR as Python's `os` functions do (PEP 475); `path` names the file
/// in the error.
fn retrying<T: Copy + PartialEq + From<i8> + Send>(
    py: Python<'_>,
    path: Option<&Bound<'_, PyAny>>,
    mut call: impl FnMut() -> T + Send,
) -> PyResult<T> {
    loop {
        let (r, err) = py.detach(|| {
            let r = call();
            (r, std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        });
        if r != T::from(-1) {
            return Ok(r);
        }
        if err != libc::EINTR {
            return Err(match path {
                Some(p) => path_error(py, err, p),
                None => crate::io::os_error::from_errno(py, err),
            });
        }
        py.check_signals()?;
    }
}

/// `(st_mode, st_ino)` of `os.stat(path)`.
#[pyfunction]
fn path_mode_and_inode(py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<(u32, u64)> {
    let c = c_path(path)?;
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let st_ptr = &mut st as *mut libc::stat as usize;
    retrying(py, Some(path), || unsafe { libc::stat(c.as_ptr(), st_ptr as *mut libc::stat) })?;
    Ok((st.st_mode, st.st_ino))
}

/// `os.unlink(path)`.
#[pyfunction]
fn unlink_path(py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<()> {
    let c = c_path(path)?;
    retrying(py, Some(path), || unsafe { libc::unlink(c.as_ptr()) })?;
    Ok(())
}

/// `os.sendfile(out_fd, in_fd, offset, count)`: bytes sent. `count` is a
/// C `ssize_t` as for `os.sendfile`, with its OverflowError.
#[pyfunction]
fn sendfile(py: Python<'_>, out_fd: RawFd, in_fd: RawFd, offset: i64, count: &Bound<'_, PyAny>) -> PyResult<isize> {
    // SAFETY: GIL held; -1 with an exception set on failure.
    let count = unsafe { ffi::PyLong_AsSsize_t(count.as_ptr()) };
    if count == -1 {
        if let Some(err) = PyErr::take(py) {
            return Err(err);
        }
    }
    let mut off: libc::off_t = offset;
    let off_ptr = &mut off as *mut libc::off_t as usize;
    // A negative count goes to the kernel as the size_t it becomes, as in os.sendfile.
    retrying(py, None, || unsafe { libc::sendfile(out_fd, in_fd, off_ptr as *mut libc::off_t, count as usize) })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(path_mode_and_inode, m)?)?;
    m.add_function(wrap_pyfunction!(unlink_path, m)?)?;
    m.add_function(wrap_pyfunction!(sendfile, m)?)?;
    Ok(())
}
