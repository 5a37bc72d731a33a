//! `bare_pingora` with mimalloc as the global allocator, as gatehouse has: the baseline that
//! separates what gatehouse's code costs from what the allocator saves (issue #8).
//!
//! ```sh
//! cargo build --release --example bare_pingora_mimalloc
//! PINGORA_BIN=target/release/examples/bare_pingora_mimalloc bash loadtest/instructions.sh
//! ```

/// The same allocator as gatehouse's, asked the same way (src/allocator.rs).
#[global_allocator]
static GLOBAL: gatehouse::allocator::Mimalloc = gatehouse::allocator::Mimalloc;

#[path = "bare_pingora.rs"]
mod bare;

fn main() {
    bare::main()
}
