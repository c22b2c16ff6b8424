//! The targets below the actions: the client-level code for each kind of target named in
//! `sopkit.toml`. [`ssh`] runs the system OpenSSH client on a shared connection, [`mysql`]
//! drives a MariaDB/MySQL server with its own command-line clients, and [`s3`] talks to a
//! bucket through the AWS SDK (multipart uploads, hashing, version listings, object lock).
//!
//! Nothing here imports an action: what both need (the error an action ends with, hashing
//! streams, chunked pipe copies) is in [`crate::run::stream`].

pub mod mysql;
pub mod s3;
pub mod ssh;
