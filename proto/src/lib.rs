//! The `herald.v1` contract shared by every Herald service and by the
//! systems that publish to Herald.
//!
//! Types are generated from `proto/herald/v1/*.proto`. Subject and stream
//! names live in [`subjects`] and nowhere else; so do the other names that
//! cross a process boundary without being I/O: enum names (`Channel::name`,
//! `Priority::parse`, …), ids ([`ids`]), cancel keys ([`cancel_keys`]) and
//! broadcast ids and keys ([`broadcasts`]).

pub mod access;
pub mod broadcasts;
pub mod cancel_keys;
pub mod ids;
pub mod keyspace;
mod names;
mod requests;
pub mod subjects;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("herald.v1");

    /// Encoded `FileDescriptorSet` of every herald.v1 file, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/herald_descriptor.bin"));
}

pub use prost::Message;
pub use prost_types::Timestamp;

/// A protobuf timestamp for a wall-clock instant.
pub fn timestamp(t: std::time::SystemTime) -> Timestamp {
    Timestamp::from(t)
}

/// The wall-clock instant a protobuf timestamp names (the epoch when absent).
pub fn system_time(t: Option<&Timestamp>) -> std::time::SystemTime {
    match t {
        Some(t) if t.seconds >= 0 => {
            std::time::SystemTime::try_from(*t).unwrap_or(std::time::UNIX_EPOCH)
        }
        _ => std::time::UNIX_EPOCH,
    }
}

pub fn now() -> Timestamp {
    timestamp(std::time::SystemTime::now())
}
