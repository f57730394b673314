//! A trained model as a self-describing directory: `config.json` holds
//! everything needed to rebuild and use it (architecture, feature settings,
//! standardisation statistics, labels, training provenance) and
//! `model.safetensors` its weights. Loading goes config → `init` → weights,
//! so a directory whose tensors do not fit its config is a clear error.

use std::path::{Path, PathBuf};

use burn::store::{HalfPrecisionAdapter, ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::fusion::{EmotionModel, EmotionModelConfig};
use crate::features::{FeatureConfig, FeatureStats};
use crate::persist;

/// Written into every `config.json`; a different value is refused.
pub const FORMAT: &str = "emofuse-model/1";
pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// `config.json` of a model directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub format: String,
    pub model: EmotionModelConfig,
    /// The frame features the spectral stream was trained on; inference uses exactly these.
    pub features: FeatureConfig,
    /// Per-feature standardisation fitted on the training clips.
    pub feature_stats: Option<FeatureStats>,
    /// Class names, in the order of the model's outputs.
    pub labels: Vec<String>,
    /// Mean pooled embedding of each stream over the training clips: the
    /// "absent" stream of stream-level SHAP.
    pub embedding_means: EmbeddingMeans,
    /// How the model was made.
    pub training: Option<Provenance>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingMeans {
    pub spectral: Option<Vec<f32>>,
    pub temporal: Option<Vec<f32>>,
}

/// Where a model came from, so that a result can be traced and re-run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The command line that trained it.
    pub command: String,
    /// Corpus folders or manifests, and the corpora they held.
    pub data: Vec<String>,
    /// Fold protocol and number, when trained on one fold.
    pub fold: Option<String>,
    pub seed: u64,
    /// emofuse version and the git commit it was built from.
    pub version: String,
    pub commit: String,
    pub train_clips: usize,
    pub validation_clips: usize,
    /// How the validation split was made (which speakers, or why none).
    pub validation: String,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub best_validation_ua: Option<f64>,
    pub seconds: f64,
}

/// Why a model directory could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ModelDirError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{}: not an emofuse model config: {source}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{}: format {found:?}, this emofuse reads {FORMAT:?}", path.display())]
    Format { path: PathBuf, found: String },
    #[error("{}: the weights do not fit config.json: {detail}", path.display())]
    Mismatch { path: PathBuf, detail: String },
}

impl ModelConfig {
    pub fn read(dir: &Path) -> Result<ModelConfig, ModelDirError> {
        let path = dir.join(CONFIG_FILE);
        let bytes = std::fs::read(&path).map_err(|source| ModelDirError::Read {
            path: path.clone(),
            source,
        })?;
        Self::from_json(&bytes, &path)
    }

    /// Parses `config.json` bytes; `path` names them in errors.
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<ModelConfig, ModelDirError> {
        let config: ModelConfig = serde_json::from_slice(bytes).map_err(|source| ModelDirError::Json {
            path: path.to_owned(),
            source,
        })?;
        if config.format != FORMAT {
            return Err(ModelDirError::Format {
                path: path.to_owned(),
                found: config.format,
            });
        }
        Ok(config)
    }
}

/// Writes `dir/model.safetensors` (f16 when `half`, halving the size) and
/// then `dir/config.json`, each atomically.
pub fn save(dir: &Path, config: &ModelConfig, model: &EmotionModel, half: bool) -> Result<(), ModelDirError> {
    let weights = weights_bytes(model, half).map_err(|detail| ModelDirError::Write {
        path: dir.join(WEIGHTS_FILE),
        source: std::io::Error::other(detail),
    })?;
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        persist::write_atomic(&path, bytes).map_err(|source| ModelDirError::Write { path, source })
    };
    write(WEIGHTS_FILE, &weights)?;
    let json = serde_json::to_vec_pretty(config).expect("a model config serialises");
    write(CONFIG_FILE, &json)
}

/// The model's weights as safetensors bytes.
pub fn weights_bytes(model: &EmotionModel, half: bool) -> Result<Vec<u8>, String> {
    // One metadata entry: burn's default three are in hash order, which
    // made two saves of the same weights differ byte for byte.
    let mut store = SafetensorsStore::from_bytes(None)
        .clear_metadata()
        .metadata("format", FORMAT);
    if half {
        store = store.with_to_adapter(HalfPrecisionAdapter::new());
    }
    model.save_into(&mut store).map_err(|err| err.to_string())?;
    store.get_bytes().map_err(|err| err.to_string())
}

/// Reads a model directory.
pub fn load(dir: &Path, device: &Device) -> Result<(ModelConfig, EmotionModel), ModelDirError> {
    let config = ModelConfig::read(dir)?;
    let path = dir.join(WEIGHTS_FILE);
    let weights = std::fs::read(&path).map_err(|source| ModelDirError::Read {
        path: path.clone(),
        source,
    })?;
    let model = model_from_bytes(&config, weights, &path, device)?;
    Ok((config, model))
}

/// Builds the model of `config` and loads `weights` (safetensors bytes, f32
/// or f16) into it; `path` names them in errors.
pub fn model_from_bytes(
    config: &ModelConfig,
    weights: Vec<u8>,
    path: &Path,
    device: &Device,
) -> Result<EmotionModel, ModelDirError> {
    let mismatch = |detail: String| ModelDirError::Mismatch {
        path: path.to_owned(),
        detail,
    };
    let mut model = config.model.init(None, device);
    // The adapter flips f16 ↔ f32, so it is only for files saved with `half`.
    let half = safetensors::SafeTensors::deserialize(&weights)
        .map_err(|err| mismatch(err.to_string()))?
        .tensors()
        .iter()
        .any(|(_, view)| view.dtype() == safetensors::Dtype::F16);
    let mut store = SafetensorsStore::from_bytes(Some(weights));
    if half {
        store = store.with_from_adapter(HalfPrecisionAdapter::new());
    }
    let result = model.load_from(&mut store).map_err(|err| mismatch(err.to_string()))?;
    let mut problems = Vec::new();
    if !result.missing.is_empty() {
        let names: Vec<&str> = result.missing.iter().map(|(name, _)| name.as_str()).collect();
        problems.push(format!("missing {}: {}", names.len(), names.join(", ")));
    }
    if !result.unused.is_empty() {
        problems.push(format!(
            "unexpected {}: {}",
            result.unused.len(),
            result.unused.join(", ")
        ));
    }
    if !result.errors.is_empty() {
        let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        problems.push(errors.join("; "));
    }
    if problems.is_empty() {
        Ok(model)
    } else {
        Err(mismatch(problems.join("; ")))
    }
}
