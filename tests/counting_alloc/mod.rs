//! A counting global allocator for the allocation tests: it counts only the allocations of the thread being
//! measured, so tests running in parallel do not disturb each other. Each test binary that includes this
//! module gets it as its global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    /// Allocations made by this thread while it is being measured (`None` when not measuring).
    static COUNT: Cell<Option<usize>> = const { Cell::new(None) };
}

fn record() {
    // `try_with`: no panic if an allocation happens while the thread's locals are torn down.
    let _ = COUNT.try_with(|c| c.set(c.get().map(|n| n + 1)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The number of heap allocations `f` makes on this thread.
pub fn allocations_in(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(Some(0)));
    f();
    COUNT.with(|c| c.replace(None)).unwrap_or(0)
}

#[global_allocator]
static GLOBAL: Counting = Counting;
