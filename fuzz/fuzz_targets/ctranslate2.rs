//! Any bytes as a CTranslate2 Whisper `model.bin`.
#![no_main]

use emofuse::model::whisper::load::read_ct2_encoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bin");
    std::fs::write(&path, data).unwrap();
    let _ = read_ct2_encoder(&path);
});
