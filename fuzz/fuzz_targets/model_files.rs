//! A model folder's files from outside: any bytes as `config.json`, and any
//! bytes as `model.safetensors` for the built-in model's architecture.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use burn::tensor::Device;
use emofuse::infer::Predictor;
use emofuse::model::saved::{self, ModelConfig};
use libfuzzer_sys::fuzz_target;

fn builtin() -> &'static ModelConfig {
    static CONFIG: OnceLock<ModelConfig> = OnceLock::new();
    CONFIG.get_or_init(|| Predictor::builtin().unwrap().config().clone())
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let path = Path::new("fuzz/model");
    if which % 2 == 0 {
        let _ = ModelConfig::from_json(bytes, path);
    } else {
        let _ = saved::model_from_bytes(builtin(), bytes.to_vec(), path, &Device::flex());
    }
});
