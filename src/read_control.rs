//! The reading switch every transport core shares (stream, datagram, read
//! pipe): asyncio's `is_reading`, `pause_reading`, `resume_reading`, and the
//! start of reading once `connection_made` has run. Each core says where its
//! flags and its Python transport are; the logic is written once here.

use crate::event_loop::LoopCore;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::PyClass;

pub trait ReadControl: PyClass<Frozen = True> + Sync {
    /// (closing, paused)
    fn read_flags(&self, py: Python<'_>) -> (bool, bool);
    fn set_paused(&self, py: Python<'_>, paused: bool);
    /// Registers (or drops) the core's reader with the loop.
    fn watch_reads(slf: &Bound<'_, Self>, on: bool) -> PyResult<()>;
    fn event_loop(&self) -> &Py<LoopCore>;
    /// The Python transport, until the connection is lost.
    fn py_transport<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>>;

    fn reading(&self, py: Python<'_>) -> bool {
        let (closing, paused) = self.read_flags(py);
        !closing && !paused
    }

    fn pause(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if !slf.get().reading(py) {
            return Ok(());
        }
        slf.get().set_paused(py, true);
        Self::watch_reads(slf, false)?;
        debug_log(slf.get(), py, "%r pauses reading")
    }

    fn resume(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (closing, paused) = slf.get().read_flags(py);
        if closing || !paused {
            return Ok(());
        }
        slf.get().set_paused(py, false);
        Self::watch_reads(slf, true)?;
        debug_log(slf.get(), py, "%r resumes reading")
    }

    fn start(slf: &Bound<'_, Self>) -> PyResult<()> {
        if slf.get().reading(slf.py()) {
            Self::watch_reads(slf, true)?;
        }
        Ok(())
    }
}

/// asyncio logs reading switches in debug mode, through the transport.
fn debug_log<T: ReadControl>(core: &T, py: Python<'_>, fmt: &str) -> PyResult<()> {
    if core.event_loop().get().debug(py) {
        if let Some(t) = core.py_transport(py) {
            t.call_method1("_log_debug", (fmt,))?;
        }
    }
    Ok(())
}
