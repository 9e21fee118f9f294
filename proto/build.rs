//! Compiles `vexil/v1/*.proto` without a system `protoc`: `protox` parses the files into a
//! descriptor set, which is written to OUT_DIR (for server reflection) and handed to
//! `tonic-prost-build` for code generation.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "vexil/v1/model.proto",
    "vexil/v1/admin.proto",
    "vexil/v1/evaluation.proto",
    "vexil/v1/sync.proto",
    "vexil/v1/events.proto",
    "vexil/v1/experiments.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }

    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(PROTOS)?;
    std::fs::write(
        out_dir.join("vexil_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
