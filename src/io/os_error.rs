//! OS errors as Python sees them: `OSError(errno, strerror)`, promoted to
//! the matching subclass (ConnectionResetError, PermissionError…) exactly
//! as the `socket` and `select` modules raise them.

use pyo3::ffi;
use pyo3::prelude::*;
use std::io;

pub fn from_errno(py: Python<'_>, err: i32) -> PyErr {
    unsafe {
        *libc::__errno_location() = err;
        ffi::PyErr_SetFromErrno(ffi::PyExc_OSError);
    }
    PyErr::fetch(py)
}

/// An `io::Error` from a system call; one without an errno keeps its message.
pub fn from_io(py: Python<'_>, e: io::Error) -> PyErr {
    match e.raw_os_error() {
        Some(err) => from_errno(py, err),
        None => e.into(),
    }
}
