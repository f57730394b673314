//! A trained model as a self-describing directory: `config.json` holds
//! everything needed to rebuild and use it (architecture, feature settings,
//! standardisation statistics, labels, training provenance) and
//! `model.safetensors` its weights. Loading goes config → `init` → weights,
//! so a directory whose tensors do not fit its config is a clear error.

use std::path::{Path, PathBuf};

use burn::store::{HalfPrecisionAdapter, ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::fusion::{EmotionModel, EmotionModelConfig, ModelKind};
use crate::features::{FeatureConfig, FeatureStats};
use crate::persist;

/// Written into every `config.json`; a different value is refused.
pub const FORMAT: &str = "emofuse-model/1";
pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Which clips trained, validated and tested the model ([`SplitFile`]).
pub const SPLIT_FILE: &str = "split.json";

/// The most parameters a model may have (4 GB as f32; wav2vec 2.0 large has
/// 0.3 billion): a config asking for more is damaged, not ambitious.
const MAX_PARAMETERS: usize = 1_000_000_000;

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
    /// Softmax temperature fitted on the validation speakers after
    /// training (calibrated confidence); 1 when there were none.
    #[serde(default = "uncalibrated")]
    pub temperature: f32,
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
    /// Cross-validations of the same recipe (`train --cv-summary`): what to
    /// expect on speakers or corpora the model never heard.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cross_validation: Vec<CrossValidation>,
}

impl Provenance {
    /// The corpora it was trained on, without the local folders they were read from.
    pub fn corpora(&self) -> Vec<String> {
        self.data.iter().map(|source| without_folder(source)).collect()
    }
}

/// `"<folder> (<corpus>, <n> clips)"`, as corpus sources are recorded → `"<corpus>, <n> clips"`.
pub fn without_folder(source: &str) -> String {
    match source.rfind(" (") {
        Some(at) => source[at + 2..].trim_end_matches(')').to_owned(),
        None => Path::new(source)
            .file_name()
            .map_or_else(|| source.to_owned(), |name| name.to_string_lossy().into_owned()),
    }
}

/// One cross-validation's result, as a model carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossValidation {
    /// Fold protocol (`emobox`, `leave-one-corpus-out`, …).
    pub protocol: String,
    /// The corpora, without local folders.
    pub corpora: Vec<String>,
    pub folds: usize,
    /// Unweighted accuracy over the folds' test clips, mean and std over folds (0–1).
    pub ua_mean: f64,
    pub ua_std: f64,
    /// Expected calibration error of the pooled test clips, after calibration.
    pub ece: Option<f64>,
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
    #[error("{}: not a usable model config: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error("{}: neither a model folder (config.json) nor a cv folder (fold-K/)", path.display())]
    NotAModel { path: PathBuf },
    #[error("{}: a cv folder holds one model per fold, and this run has no fold to pick one by", path.display())]
    FoldNeeded { path: PathBuf },
    #[error("{}: a cv folder without a model for fold {fold}", path.display())]
    NoFold { path: PathBuf, fold: usize },
}

fn uncalibrated() -> f32 {
    1.0
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
        config.validate().map_err(|detail| ModelDirError::Invalid {
            path: path.to_owned(),
            detail,
        })?;
        Ok(config)
    }

    /// Checks that a model can be built from this config and used: every
    /// size positive and within reason, the parts fitting each other.
    pub fn validate(&self) -> Result<(), String> {
        let model = &self.model;
        let spectral = &model.spectral;
        self.features.validate().map_err(|e| e.to_string())?;
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(format!("temperature {}: want a positive number", self.temperature));
        }
        if spectral.channels.is_empty() || spectral.channels.contains(&0) {
            return Err(format!(
                "spectral channels {:?}: want at least one block, each wider than 0",
                spectral.channels
            ));
        }
        let sizes = [
            ("spectral kernel_size", spectral.kernel_size),
            ("spectral attention_dim", spectral.attention_dim),
            ("temporal d_model", model.temporal.d_model),
            ("temporal attention_dim", model.temporal.attention_dim),
            ("n_classes", model.n_classes),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, size)| *size == 0) {
            return Err(format!("{name} is 0"));
        }
        if model.kind.has_spectral() && spectral.channels_in != self.features.n_features() {
            return Err(format!(
                "the spectral stream takes {} feature rows, the features have {}",
                spectral.channels_in,
                self.features.n_features()
            ));
        }
        if model.kind.has_temporal() {
            let width = model.temporal.embedding_width();
            let concatenated = matches!(model.kind, ModelKind::Temporal | ModelKind::FusionConcat);
            if width != model.d_model() && !concatenated {
                return Err(format!(
                    "the temporal stream is {width} wide, the fusion {}",
                    model.d_model()
                ));
            }
            model.temporal.backbone.validate()?;
        }
        if self.labels.len() != model.n_classes {
            return Err(format!(
                "{} labels for a classifier of {} classes",
                self.labels.len(),
                model.n_classes
            ));
        }
        if let Some(stats) = &self.feature_stats {
            let n = self.features.n_features();
            let usable = stats.mean.len() == n
                && stats.std.len() == n
                && stats.mean.iter().all(|m| m.is_finite())
                && stats.std.iter().all(|s| s.is_finite() && *s > 0.0);
            if !usable {
                return Err(format!("feature_stats: want {n} finite means and positive deviations"));
            }
        }
        let means = [
            (&self.embedding_means.spectral, model.d_model()),
            (&self.embedding_means.temporal, model.temporal.embedding_width()),
        ];
        if let Some((_, width)) = means
            .iter()
            .find(|(m, width)| m.as_ref().is_some_and(|m| m.len() != *width))
        {
            return Err(format!("embedding_means: want {width} values for the stream"));
        }
        let parameters = model.parameter_count();
        if parameters > MAX_PARAMETERS {
            return Err(format!(
                "about {parameters} parameters, more than the {MAX_PARAMETERS} a model may have"
            ));
        }
        Ok(())
    }
}

/// `split.json` of a model trained on part of a corpus: which files
/// trained, validated and tested it (the test files are what evaluation
/// tools score it on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitFile {
    /// `"emobox fold 3"`, `"all clips"`, …
    pub name: String,
    pub test: Vec<PathBuf>,
    pub train: Vec<PathBuf>,
    /// How the validation clips were chosen.
    pub validation: String,
    pub validation_clips: Vec<PathBuf>,
}

impl SplitFile {
    /// The `split.json` of model folder `dir`, if it has one.
    pub fn read(dir: &Path) -> Result<Option<SplitFile>, ModelDirError> {
        let path = dir.join(SPLIT_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).map_err(|source| ModelDirError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ModelDirError::Json { path, source })
    }

    /// Writes `dir/split.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<(), ModelDirError> {
        let path = dir.join(SPLIT_FILE);
        let json = serde_json::to_vec_pretty(self).expect("a split serialises");
        persist::write_atomic(&path, &json).map_err(|source| ModelDirError::Write { path, source })
    }
}

/// A folder given where a trained model is wanted: one model, or a `cv`
/// output folder holding one model per fold (`fold-K/`).
#[derive(Debug, Clone, PartialEq)]
pub enum ModelFolder {
    Model(PathBuf),
    Cv { dir: PathBuf, folds: Vec<(usize, PathBuf)> },
}

impl ModelFolder {
    /// Recognises `dir`: a model has `config.json`, a cv folder `fold-K/` folders.
    pub fn open(dir: &Path) -> Result<ModelFolder, ModelDirError> {
        if dir.join(CONFIG_FILE).is_file() {
            return Ok(ModelFolder::Model(dir.to_owned()));
        }
        let entries = std::fs::read_dir(dir).map_err(|source| ModelDirError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let mut folds: Vec<(usize, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let k = e.file_name().to_str()?.strip_prefix("fold-")?.parse().ok()?;
                Some((k, e.path()))
            })
            .collect();
        folds.sort();
        if folds.is_empty() {
            return Err(ModelDirError::NotAModel { path: dir.to_owned() });
        }
        Ok(ModelFolder::Cv {
            dir: dir.to_owned(),
            folds,
        })
    }

    /// The model for fold `fold` of a run (`None`: a run on every clip): the
    /// one model, or the cv folder's model of that fold.
    pub fn for_fold(&self, fold: Option<usize>) -> Result<PathBuf, ModelDirError> {
        match (self, fold) {
            (ModelFolder::Model(dir), _) => Ok(dir.clone()),
            (ModelFolder::Cv { dir, .. }, None) => Err(ModelDirError::FoldNeeded { path: dir.clone() }),
            (ModelFolder::Cv { dir, folds }, Some(k)) => folds
                .iter()
                .find(|(fold, path)| *fold == k && path.join(CONFIG_FILE).is_file())
                .map(|(_, path)| path.clone())
                .ok_or(ModelDirError::NoFold {
                    path: dir.clone(),
                    fold: k,
                }),
        }
    }

    /// Every model with the split it is tested on: `("all", dir)` for one
    /// model, `("fold K", dir/fold-K)` for each fold of a cv folder.
    pub fn models(&self) -> Vec<(String, PathBuf)> {
        match self {
            ModelFolder::Model(dir) => vec![("all".into(), dir.clone())],
            ModelFolder::Cv { folds, .. } => folds
                .iter()
                .map(|(k, path)| (format!("fold {k}"), path.clone()))
                .collect(),
        }
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
