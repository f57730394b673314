//! Any bytes as a checkpoint file (safetensors, or PyTorch's zip / legacy pickle
//! `pytorch_model.bin`), read by the reader every checkpoint goes through.
#![no_main]

use burn::tensor::Device;
use emofuse::model::weights::Weights;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pytorch_model.bin");
    std::fs::write(&path, data).unwrap();
    let _ = Weights::open(&path, &Device::flex(), |name| Some(name.to_owned()));
});
