#![no_main]
//! `orderlake_server::fuzzing::trino_statement` under libFuzzer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| orderlake_server::fuzzing::trino_statement(data));
