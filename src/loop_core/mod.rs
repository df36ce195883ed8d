//! The loop's core: the ready queue, timers, handles and how native methods are called.

pub mod event_loop;
pub mod handle;
pub mod timer_heap;
pub mod fastcall;
pub mod gil_cell;
pub mod loop_metrics;
pub mod tick_clock;
