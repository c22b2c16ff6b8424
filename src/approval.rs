//! Approvals: signed git commits as electronic signatures.

pub mod signature;
pub mod trailer;
