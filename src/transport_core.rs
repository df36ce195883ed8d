//! What the transport cores share (stream, datagram, pipes), written once as
//! traits with default methods; each core says where its state is.
//!
//! - `ReadControl`: asyncio's `is_reading`, `pause_reading`,
//!   `resume_reading`, and the start of reading once `connection_made` ran.
//! - `WriteFlow`: telling the protocol `pause_writing()` / `resume_writing()`
//!   at the watermarks, with asyncio's report when those calls fail.

use crate::event_loop::LoopCore;
use crate::flow_control::FlowControl;
use crate::handle::is_fatal;
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

pub trait WriteFlow: PyClass<Frozen = True> + Sync {
    /// Runs `f` on the flow-control state and the bytes now buffered.
    fn with_flow<R>(&self, py: Python<'_>, f: impl FnOnce(&mut FlowControl, usize) -> R) -> R;
    fn protocol(&self, py: Python<'_>) -> Option<Py<PyAny>>;
    fn flow_transport<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>>;

    fn maybe_pause_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if slf.get().with_flow(py, |f, buffered| f.should_pause(buffered)) {
            protocol_flow_call(slf.get(), py, "pause_writing")?;
        }
        Ok(())
    }

    fn maybe_resume_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if slf.get().with_flow(py, |f, buffered| f.should_resume(buffered)) {
            protocol_flow_call(slf.get(), py, "resume_writing")?;
        }
        Ok(())
    }
}

/// Calls the protocol's pause/resume_writing; a failure goes to the loop's
/// exception handler (through the transport), as asyncio's flow control does.
fn protocol_flow_call<T: WriteFlow>(core: &T, py: Python<'_>, method: &str) -> PyResult<()> {
    let Some(protocol) = core.protocol(py) else { return Ok(()) };
    if let Err(e) = protocol.call_method0(py, method) {
        if is_fatal(py, &e) {
            return Err(e);
        }
        if let Some(t) = core.flow_transport(py) {
            t.call_method1("_protocol_call_failed", (format!("protocol.{}() failed", method), e.value(py)))?;
        }
    }
    Ok(())
}
