//! `bare_pingora` with mimalloc as the global allocator, as gatehouse has: the baseline that
//! separates what gatehouse's code costs from what the allocator saves (issue #8).
//!
//! ```sh
//! cargo build --release --example bare_pingora_mimalloc
//! PINGORA_BIN=target/release/examples/bare_pingora_mimalloc bash loadtest/instructions.sh
//! ```

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "bare_pingora.rs"]
mod bare;

fn main() {
    bare::main()
}
