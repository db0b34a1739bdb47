//! Compiles `proto/berth/v1/*.proto` with protox (pure Rust, no `protoc` needed) and
//! generates the prost messages and tonic clients and servers. The encoded descriptor set,
//! with source comments, is written next to them so the server can answer reflection
//! requests with the documentation intact.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not baked in when it is compiled: a build script
    // compiled in one checkout and reused by another (a copied target dir) must still
    // read the protos of the checkout it builds.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?)
        .join("..")
        .join("proto");
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("berth").join("v1"))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed={}", root.display());
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let descriptors = protox::Compiler::new([&root])?
        .include_imports(true)
        .include_source_info(true)
        .open_files(&files)?
        .file_descriptor_set();

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("berth_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // `AgentService.Connect` would clash with the generated `connect` constructor;
        // clients are built with `new(channel)` instead.
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
