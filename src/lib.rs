//! sopkit: standard operating procedures as code.
//!
//! A repository of Markdown SOPs is read through one [`tree::Tree`] (the working tree or a
//! git revision), parsed once into a [`corpus::Corpus`], and then read by thin commands:
//! [`check`] reports findings as data ([`diagnostic::Diagnostic`]), [`report`] prints them
//! in the formats people and CI systems read.

pub mod approval;
pub mod audit;
pub mod check;
pub mod config;
pub mod corpus;
pub mod diagnostic;
pub mod diff;
pub mod digest;
pub mod duration;
pub mod evidence;
pub mod exit;
pub mod fs_atomic;
pub mod git;
pub mod init;
pub mod notify;
pub mod render;
pub mod report;
pub mod roles;
pub mod run;
pub mod schedule;
pub mod signing;
pub mod source;
pub mod status;
pub mod time;
pub mod tree;
pub mod workspace;

/// The version of sopkit, recorded in reports, evidence and PDFs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
