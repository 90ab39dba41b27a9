//! The archiver application: configuration, the command-line surface and one module per command.
//! `main.rs` only parses, starts telemetry and dispatches.

pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
