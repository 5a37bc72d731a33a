//! Memory a config load leaves behind, given back to the OS.
//!
//! Parsing a config briefly takes ≈ 7 KB per route (serde_yaml's events, the raw tree),
//! many times what the loaded config and its snapshot keep (≈ 1.7 KB). mimalloc keeps freed
//! pages for reuse and returns them only after a delay, some of them never: with 10,000
//! routes a node stayed ≈ 11 MiB above what it held (`loadtest/routes_scale.sh`). A forced
//! collection right after each load returns them. It walks this thread's heap once, which
//! is nothing next to the parse it follows, and it is never on the request path.

/// Returns the free pages of this thread's heap to the OS (the loading thread's, where the
/// parse's garbage is).
#[allow(unsafe_code)]
pub fn release_after_load() {
    // SAFETY: mi_collect takes no pointer and may be called at any time from any thread;
    // when mimalloc is not the global allocator (unit tests) its heap is empty.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
