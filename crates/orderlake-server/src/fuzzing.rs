//! What the fuzz targets (`fuzz/fuzz_targets/`) run, one function per target, each over
//! arbitrary bytes from a client: the statement preparation (parsing, vetting, the Trino-style
//! rewrites), the Trino door's own statements, ticket and handle decoding, and the authorization
//! header. Each must end in a value or an error, never a panic, and keep its own invariants
//! (asserted here, so a fuzzer reports a broken one as a crash). The suite replays the
//! repository's corpus through the same functions (`tests/fuzz_corpus.rs`).

use orderlake_query::QueryScope;
use orderlake_query::statement::parse_one;
use tonic::metadata::{MetadataMap, MetadataValue};

use crate::auth;
use crate::ticket::QueryHandle;
use crate::trino::statement::{ClientSession, classify};

/// What a fuzz target runs on one input.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name (a folder of `fuzz/corpus/` each).
pub const TARGETS: [(&str, Target); 4] = [
    ("statement", statement),
    ("trino_statement", trino_statement),
    ("ticket", ticket),
    ("authorization", authorization),
];

/// A statement's text as the engine takes it before planning: parsed as the engine parses
/// (DataFusion's default generic dialect and recursion limit), vetted and rewritten.
pub fn statement(data: &[u8]) {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let scope = QueryScope {
        catalog: "archive".into(),
        schema: "oms".into(),
        time_zone: None,
        max_run_time: None,
        max_memory_bytes: None,
    };
    if let Ok(prepared) = orderlake_query::statement::prepare(sql, &scope, parse_one) {
        // What passed the vetting still passes it when read back from its printed form.
        let printed = prepared.to_string();
        if let Ok(again) = parse_one(&printed) {
            assert!(
                orderlake_query::statement::vet(&again).is_ok(),
                "vetted statement refused when printed back: {printed}"
            );
        }
    }
}

/// A statement as the Trino door's own parser reads it (`USE`, `PREPARE`, `EXECUTE`, …).
pub fn trino_statement(data: &[u8]) {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let mut session = ClientSession::default();
    let _ = classify(sql, &session);
    // The same text as a prepared statement the session carries.
    session.prepared.insert("q".into(), sql.to_owned());
    let _ = classify("EXECUTE q USING 1, 'a'", &session);
}

/// A ticket or prepared-statement handle as a client sends it back.
pub fn ticket(data: &[u8]) {
    let Ok(handle) = QueryHandle::decode(data) else {
        return;
    };
    let _ = handle.param_values();
    let again = QueryHandle::decode(&handle.encode()).expect("an encoded handle decodes");
    assert_eq!(
        again.encode(),
        handle.encode(),
        "a handle survives a round trip"
    );
}

/// An `authorization` header's value.
pub fn authorization(data: &[u8]) {
    let Ok(value) = MetadataValue::try_from(data) else {
        return;
    };
    let mut metadata = MetadataMap::new();
    metadata.insert("authorization", value);
    auth::check_authorization_header(&metadata);
}
