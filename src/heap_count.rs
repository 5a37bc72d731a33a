//! Tests only: the unit tests' global allocator, which counts the heap bytes each thread
//! holds, so that a test can bound what a structure costs (bytes per route of a snapshot).
//! The system allocator does the work; counting is a thread-local add.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
}

/// Heap bytes allocated and not freed by this thread so far (as asked for, before the
/// allocator's rounding).
pub fn held() -> isize {
    HELD.with(Cell::get)
}

fn count(bytes: isize) {
    // `try_with`: the thread-local is gone while the thread's own destructors free memory.
    let _ = HELD.try_with(|held| held.set(held.get() + bytes));
}

struct Counting;

// SAFETY: every call goes to `System` with the caller's own arguments; counting touches
// only a thread-local integer and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;
