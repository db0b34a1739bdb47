//! Shared pieces of Berth: the generated `berth.v1` protocol, client connection helpers,
//! logging and trace export set-up, and (re-exported from `berth-token`) the token format. Every
//! other crate depends on this one; it depends on no Berth crate but `berth-token`.

pub mod client;
pub mod logging;
pub mod metrics;
pub mod telemetry;

/// The token format (its own crate, so the server's domain can use it without the
/// protocol).
pub use berth_token as token;

/// The generated `berth.v1` messages, clients and servers.
pub mod proto {
    #![expect(clippy::all, reason = "generated code")]
    tonic::include_proto!("berth.v1");
}

/// Encoded `FileDescriptorSet` of every Berth proto file (with imports and comments), for
/// gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/berth_descriptor.bin"));

/// The agent protocol version spoken by this build; a worker with another is refused.
pub const PROTOCOL_VERSION: u32 = 1;
