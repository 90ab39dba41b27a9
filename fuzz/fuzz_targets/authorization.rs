#![no_main]
//! `orderlake_server::fuzzing::authorization` under libFuzzer.

libfuzzer_sys::fuzz_target!(|data: &[u8]| orderlake_server::fuzzing::authorization(data));
