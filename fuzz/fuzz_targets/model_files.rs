//! A model folder's files from outside: any bytes as `config.json` (read,
//! validated and, when valid, built into a predictor with the built-in
//! model's weights), and any bytes as `model.safetensors` for the built-in
//! model's architecture.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use burn::tensor::Device;
use emofuse::infer::Predictor;
use emofuse::model::saved::{self, ModelConfig};
use libfuzzer_sys::fuzz_target;

/// Models larger than this are valid but too big to build in the fuzzer's memory.
const MAX_FUZZ_PARAMETERS: usize = 20_000_000;

fn builtin() -> &'static ModelConfig {
    static CONFIG: OnceLock<ModelConfig> = OnceLock::new();
    CONFIG.get_or_init(|| Predictor::builtin(&Device::flex()).unwrap().config().clone())
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let path = Path::new("fuzz/model");
    let device = Device::flex();
    if which % 2 == 0 {
        let Ok(config) = ModelConfig::from_json(bytes, path) else {
            return;
        };
        if config.model.parameter_count() > MAX_FUZZ_PARAMETERS {
            return;
        }
        // A config that validates must build, and then fit the weights or be refused.
        let weights = include_bytes!("../../models/default/model.safetensors").to_vec();
        if let Ok(model) = saved::model_from_bytes(&config, weights, path, &device) {
            let _ = Predictor::from_parts(config, model, &device);
        }
    } else {
        let _ = saved::model_from_bytes(builtin(), bytes.to_vec(), path, &device);
    }
});
