//! Any bytes as a dataset manifest (CSV or JSONL, chosen by the first byte).
#![no_main]

use emofuse::data::manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, text)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(if kind % 2 == 0 { "m.csv" } else { "m.jsonl" });
    std::fs::write(&path, text).unwrap();
    let _ = manifest::load(&path);
});
