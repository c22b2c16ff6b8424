//! One integration-test binary over fixture repositories built in temp dirs with real git.

mod support;

mod approvals;
mod base;
mod check_rules;
mod ecosystem;
mod formats;
mod notify;
mod properties;
mod render;
mod roles;
mod run;
mod s3;
mod schedule;
mod services;
mod status;
mod targets;
mod trust;
mod zero_config;
