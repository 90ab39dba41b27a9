//! The fuzz targets' corpus (`fuzz/corpus/<target>/`, seeds and what fuzzing kept) replayed
//! through the same functions the targets run (`orderlake_server::fuzzing`): every input that
//! once mattered stays free of panics and broken invariants. `scripts/fuzz.sh` runs the
//! targets themselves under libFuzzer.

use std::path::PathBuf;

use orderlake_server::fuzzing::TARGETS;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn every_corpus_input_runs_clean_through_its_target() {
    for (target, run) in TARGETS {
        let inputs = corpus(target);
        assert!(
            inputs.len() >= 5,
            "fuzz/corpus/{target} holds {} inputs; its seeds are missing",
            inputs.len()
        );
        for (path, bytes) in inputs {
            if std::panic::catch_unwind(|| run(&bytes)).is_err() {
                panic!("{target}: {} panics (see above)", path.display());
            }
        }
    }
}
