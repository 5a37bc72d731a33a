//! Generates the gRPC test service's code (tests/proto/echo.proto) for tests/grpc.rs. The
//! gateway itself uses no generated code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=tests/proto/echo.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["tests/proto/echo.proto"], &["tests/proto"])?;
    Ok(())
}
