//! The process's global allocator: mimalloc, asked plainly when plain is enough.
//!
//! The `mimalloc` crate's allocator sends every allocation through `mi_malloc_aligned`,
//! and mimalloc 3 serves an aligned request from its ordinary size classes only when the
//! class is a power of two: a 48-byte box with 8-byte alignment took the over-allocating
//! aligned path (≈ 130 instructions instead of ≈ 20) and a 64-byte block. A proxied request
//! made about 14 such allocations. Every mimalloc block is 8-aligned, and 16-aligned from
//! 16 bytes up (malloc's guarantee, which mimalloc keeps as a drop-in malloc), so a layout
//! asking no more goes to the plain calls, as std's `System` does with glibc's malloc;
//! only larger alignments (tokio's cache-padded structures) take the aligned ones.
//! The same change is proposed upstream (purpleprotocol/mimalloc_rust#170).

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc, mi_zalloc_aligned,
};
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// The alignment every plain mimalloc block of at least this size has.
const PLAIN_ALIGN: usize = 16;

/// mimalloc as the global allocator (see the module's comment).
pub struct Mimalloc;

/// A block of `size` bytes from the plain calls is aligned enough for `align`.
fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: every call goes to mimalloc with the caller's size; the plain calls only where
// their blocks are aligned as asked (`plain`), the aligned calls otherwise. mi_free and
// mi_realloc take any block mimalloc gave, whichever call made it.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        let block = if plain(align, size) {
            unsafe { mi_malloc(size) }
        } else {
            unsafe { mi_malloc_aligned(size, align) }
        };
        block.cast()
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        let block = if plain(align, size) {
            unsafe { mi_zalloc(size) }
        } else {
            unsafe { mi_zalloc_aligned(size, align) }
        };
        block.cast()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { mi_free(ptr.cast::<c_void>()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        let block = if plain(align, new_size) {
            unsafe { mi_realloc(ptr.cast::<c_void>(), new_size) }
        } else {
            unsafe { mi_realloc_aligned(ptr.cast::<c_void>(), new_size, align) }
        };
        block.cast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_have_the_alignment_their_layout_asks_for() {
        // The sizes that go plain (48: the size class that was over-allocated) and the
        // alignments that do not (tokio pads to 128).
        for (size, align) in [
            (8, 8),
            (16, 16),
            (24, 8),
            (48, 8),
            (48, 16),
            (1500, 16),
            (8, 16),
            (256, 128),
            (64, 64),
        ] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a non-zero layout; every block is written within its size, then freed
            // with the same layout.
            #[allow(unsafe_code)]
            unsafe {
                let block = Mimalloc.alloc(layout);
                assert!(!block.is_null());
                assert_eq!(block as usize % align, 0, "{size} bytes aligned to {align}");
                block.write_bytes(0xab, size);
                let grown = Mimalloc.realloc(block, layout, size * 3);
                assert_eq!(
                    grown as usize % align,
                    0,
                    "{size} → {} bytes aligned to {align}",
                    size * 3
                );
                assert_eq!(*grown.add(size - 1), 0xab, "realloc keeps the contents");
                Mimalloc.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
                let zeroed = Mimalloc.alloc_zeroed(layout);
                assert_eq!(zeroed as usize % align, 0);
                assert!(std::slice::from_raw_parts(zeroed, size).iter().all(|&b| b == 0));
                Mimalloc.dealloc(zeroed, layout);
            }
        }
    }
}
