//! Native methods called with CPython's METH_FASTCALL | METH_KEYWORDS
//! protocol directly, bypassing PyO3's trampoline and general argument
//! parser: for the hottest calls into ferroloop (`call_soon`, `create_task`,
//! a transport's `write`), where those cost more than the method's own work.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use pyo3::PyClass;
use std::ffi::CStr;

/// One fastcall method of a native class: its name, docstring and body.
pub trait FastcallMethod {
    type Class: PyClass;
    type Output;
    const NAME: &'static CStr;
    /// With the `name($self, ...)\n--\n\n` signature line `inspect` reads.
    const DOC: &'static CStr;
    /// # Safety
    /// Called through the fastcall protocol, with the GIL held.
    unsafe fn call(py: Python<'_>, slf: Bound<'_, Self::Class>, args: FastcallArgs<'_>) -> PyResult<Py<Self::Output>>;
}

/// A fastcall's arguments: the positional ones, then one value per keyword name.
pub struct FastcallArgs<'a> {
    pub positional: &'a [*mut ffi::PyObject],
    pub keywords: &'a [*mut ffi::PyObject],
    pub kwnames: *mut ffi::PyObject,
}

impl FastcallArgs<'_> {
    /// Binds the arguments to `names` as a Python function
    /// `def name(self, p0, ..., p{max_positional-1}, *, rest...)` would, with
    /// Python's messages for a call that does not fit. Missing ones are `None`.
    pub fn bind<'py, const N: usize>(
        &self,
        py: Python<'py>,
        name: &str,
        names: [&str; N],
        max_positional: usize,
    ) -> PyResult<[Option<Bound<'py, PyAny>>; N]> {
        let n = self.positional.len();
        if n > max_positional {
            return Err(PyTypeError::new_err(format!(
                "{name}() takes {} positional arguments but {} were given",
                max_positional + 1,
                n + 1
            )));
        }
        // SAFETY: every pointer is a live, borrowed argument of this call.
        let mut bound: [Option<Bound<'py, PyAny>>; N] = std::array::from_fn(|i| {
            self.positional.get(i).map(|&p| unsafe { Bound::from_borrowed_ptr(py, p) })
        });
        for (i, &value) in self.keywords.iter().enumerate() {
            let key = unsafe { Bound::from_borrowed_ptr(py, ffi::PyTuple_GET_ITEM(self.kwnames, i as ffi::Py_ssize_t)) };
            let key = key.cast::<PyString>()?.to_str()?;
            let Some(slot) = names.iter().position(|&k| k == key) else {
                return Err(PyTypeError::new_err(format!("{name}() got an unexpected keyword argument '{key}'")));
            };
            if bound[slot].is_some() {
                return Err(PyTypeError::new_err(format!("{name}() got multiple values for argument '{key}'")));
            }
            bound[slot] = Some(unsafe { Bound::from_borrowed_ptr(py, value) });
        }
        Ok(bound)
    }
}

impl<'py> FastcallArgs<'_> {
    /// The keyword arguments as a new dict, for a `**kwargs` parameter.
    pub fn keywords_dict(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (i, &value) in self.keywords.iter().enumerate() {
            // SAFETY: the names tuple and the values are live, borrowed arguments of this call.
            let (key, value) = unsafe {
                (
                    Bound::from_borrowed_ptr(py, ffi::PyTuple_GET_ITEM(self.kwnames, i as ffi::Py_ssize_t)),
                    Bound::from_borrowed_ptr(py, value),
                )
            };
            dict.set_item(key, value)?;
        }
        Ok(dict)
    }
}

/// A required argument that `bind` left out.
pub fn missing(name: &str, argument: &str) -> PyErr {
    PyTypeError::new_err(format!("{name}() missing 1 required positional argument: '{argument}'"))
}

/// The C entry point of a fastcall method: a panic becomes an exception, an
/// error is raised, a result is returned as a new reference.
unsafe extern "C" fn entry<M: FastcallMethod>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls methods with the GIL held.
    let py = unsafe { Python::assume_attached() };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
        let n = nargs as usize;
        let nkw = if kwnames.is_null() { 0 } else { ffi::PyTuple_GET_SIZE(kwnames) as usize };
        // SAFETY: CPython passes `n` positional arguments followed by one
        // value per keyword name, all borrowed for the duration of the call.
        let (positional, keywords) = std::slice::from_raw_parts(args, n + nkw).split_at(n);
        // SAFETY: the method descriptor only accepts instances of its class.
        let slf = Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<M::Class>();
        M::call(py, slf, FastcallArgs { positional, keywords, kwnames })
    }));
    let panicked = || Err(pyo3::panic::PanicException::new_err(format!("Rust panic in {}", M::NAME.to_string_lossy())));
    match outcome.unwrap_or_else(|_| panicked()) {
        Ok(v) => v.into_ptr(),
        Err(e) => {
            e.restore(py);
            std::ptr::null_mut()
        }
    }
}

/// Puts method `M` on its class, in place of any PyO3 method of that name.
pub fn install<M: FastcallMethod>(py: Python<'_>) -> PyResult<()> {
    let ty = py.get_type::<M::Class>();
    // Lives as long as the type: method descriptors keep a pointer to it.
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: M::NAME.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer { PyCFunctionFastWithKeywords: entry::<M> },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: M::DOC.as_ptr(),
    }));
    // SAFETY: `def` is valid for the rest of the process.
    let descr = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(ty.as_type_ptr(), def))? };
    ty.setattr(M::NAME.to_string_lossy().as_ref(), descr)
}
