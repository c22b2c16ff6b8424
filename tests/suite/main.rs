//! One integration-test binary over fixture repositories built in temp dirs with real git.

// The tests pin "now" through variables that only a `test-clock` build of sopkit reads.
#[cfg(not(feature = "test-clock"))]
compile_error!(
    "the integration tests need the clock a test build pins: run `cargo test --features test-clock` (scripts/test does)"
);

mod support;

mod approvals;
mod architecture;
mod audit;
mod base;
mod check_rules;
mod diff;
mod ecosystem;
mod formats;
mod notify;
mod properties;
mod regulatory;
mod render;
mod roles;
mod run;
mod s3;
mod schedule;
mod services;
mod signed_evidence;
mod status;
mod targets;
mod trust;
mod zero_config;
