//! Interior mutability guarded by the GIL.
//!
//! Every field of the loop and of its handles is read and written only by code
//! that holds the GIL, and never while a reference into the cell is kept across
//! a call back into Python. That makes an unchecked cell sound and spares the
//! hot paths PyO3's runtime borrow flag (callbacks re-enter the loop all the
//! time, which a `&mut self` borrow would forbid).

use pyo3::Python;
use std::cell::UnsafeCell;

pub struct GilCell<T>(UnsafeCell<T>);

// SAFETY: access requires a `Python` token, i.e. the GIL is held, so two
// threads never touch the contents at once.
unsafe impl<T: Send> Sync for GilCell<T> {}
unsafe impl<T: Send> Send for GilCell<T> {}

impl<T> GilCell<T> {
    pub const fn new(value: T) -> Self {
        GilCell(UnsafeCell::new(value))
    }

    /// Mutable access for the duration of `f`. `f` must not call into Python
    /// (which could re-enter and borrow the same cell).
    #[inline(always)]
    pub fn with<R>(&self, _py: Python<'_>, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: GIL held (token), and `f` does not re-enter Python.
        unsafe { f(&mut *self.0.get()) }
    }
}

impl<T> GilCell<T> {
    /// Exclusive access through `&mut self` (e.g. in `Drop`) needs no GIL proof.
    pub fn get_mut(&mut self) -> &mut T {
        self.0.get_mut()
    }

    /// The contents, for code that holds the GIL but has no token at hand.
    ///
    /// # Safety
    /// The GIL must be held and no other borrow of the cell may be live.
    pub unsafe fn raw(&self) -> *mut T {
        self.0.get()
    }

    /// Shared access for the garbage collector's traversal, which runs with
    /// the GIL held but without a `Python` token to show for it.
    ///
    /// # Safety
    /// Only call from `__traverse__`: the GIL is held and no mutable borrow
    /// of the cell is live (traversal never runs while one is).
    pub unsafe fn peek_for_gc(&self) -> &T {
        unsafe { &*self.0.get() }
    }
}

impl<T: Copy> GilCell<T> {
    #[inline(always)]
    pub fn get(&self, _py: Python<'_>) -> T {
        unsafe { *self.0.get() }
    }

    #[inline(always)]
    pub fn set(&self, _py: Python<'_>, value: T) {
        unsafe { *self.0.get() = value }
    }
}

impl<T> GilCell<Option<T>> {
    #[inline(always)]
    pub fn take(&self, _py: Python<'_>) -> Option<T> {
        unsafe { (*self.0.get()).take() }
    }

    #[inline(always)]
    pub fn replace(&self, _py: Python<'_>, value: Option<T>) -> Option<T> {
        unsafe { std::mem::replace(&mut *self.0.get(), value) }
    }
}
