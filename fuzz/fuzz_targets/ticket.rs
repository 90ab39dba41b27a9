#![no_main]
//! `orderlake_server::fuzzing::ticket` under libFuzzer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| orderlake_server::fuzzing::ticket(data));
