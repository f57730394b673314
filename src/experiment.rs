//! One experiment end to end, as `emofuse train` and `emofuse cv` run it:
//! corpora → split (test fold, validation speakers) → examples → training →
//! model directory → scores on the test fold, all written to one folder.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use crate::audio::Waveform;
use crate::augment::WaveAugment;
use crate::data::batcher::{Example, HiddenStates};
use crate::data::examples::{self, ClipAudio};
use crate::data::folds::{self, ValidationSplit};
use crate::data::{Clip, Problem};
use crate::eval::{Metrics, argmax_rows};
use crate::features::FeatureStats;
use crate::features::cache::FeatureCache;
use crate::infer::Predictor;
use crate::model::saved::{self, EmbeddingMeans, ModelConfig, Provenance};
use crate::model::temporal::{BackboneConfig, FrozenBackbone};
use crate::model::wav2vec2;
use crate::noise::NoiseBank;
use crate::persist;
use crate::train::{self, Event, TrainingConfig, TrainingData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Clips of one or more corpora with their decoded audio and features.
pub struct LoadedCorpus {
    pub clips: Vec<Clip>,
    pub audio: Vec<ClipAudio>,
    /// Corpus roots, for provenance.
    pub sources: Vec<String>,
    /// Files that could not be read (left out).
    pub problems: Vec<Problem>,
}

/// Which clips train, validate and test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// `"emobox fold 3"`, `"fold-file folds.json #2"`, or `"all clips"`.
    pub name: String,
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    pub test: Vec<usize>,
    pub validation_description: String,
}

impl Split {
    /// Carves a validation set of training speakers out of `train`.
    pub fn new(
        name: String,
        corpus: &LoadedCorpus,
        train: Vec<usize>,
        test: Vec<usize>,
        fraction: f64,
        seed: u64,
    ) -> Split {
        let ValidationSplit {
            train,
            validation,
            description,
        } = if fraction > 0.0 {
            folds::validation_split(&corpus.clips, &train, fraction, seed)
        } else {
            ValidationSplit {
                train,
                validation: Vec::new(),
                description: "none (fixed number of epochs)".into(),
            }
        };
        Split {
            name,
            train,
            validation,
            test,
            validation_description: description,
        }
    }
}

/// Settings of an experiment beyond the training loop's.
#[derive(Debug, Clone)]
pub struct ExperimentConfig {
    pub training: TrainingConfig,
    /// f16 weights in the model file (half the size).
    pub half: bool,
    /// The command line, for provenance.
    pub command: String,
    /// Where frozen encoders' hidden states are cached.
    pub cache_dir: PathBuf,
}

/// Scores and files of one finished split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldResult {
    pub split: String,
    pub model_dir: PathBuf,
    pub labels: Vec<String>,
    /// Scores on the test clips (none when the split has no test clips).
    pub test: Option<Metrics>,
    /// Test clips left out because their label never occurs in training.
    pub unscored_test_clips: usize,
    pub best_epoch: usize,
    pub best_validation_ua: Option<f64>,
    pub train_seconds: f64,
}

pub const RESULT_FILE: &str = "results.json";

#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error(transparent)]
    Train(#[from] train::TrainError),
    #[error(transparent)]
    ModelDir(#[from] saved::ModelDirError),
    #[error(transparent)]
    Infer(#[from] crate::infer::InferError),
    #[error("the pretrained encoder: {0}")]
    Backbone(#[from] wav2vec2::LoadError),
    #[error("the pretrained encoder: {0}")]
    Frozen(#[from] crate::model::temporal::BackboneError),
    #[error("{}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Cache(#[from] crate::features::cache::CacheError),
    #[error("{}: {source}", path.display())]
    Hash { path: PathBuf, source: std::io::Error },
    #[error("the noise corpus: {0}")]
    Noise(#[from] crate::noise::NoiseError),
    #[error("--teacher {}: {problem}", dir.display())]
    Teacher { dir: PathBuf, problem: String },
    #[error("interrupted: the checkpoint is saved; run the same command with --resume to continue")]
    Interrupted,
}

/// Trains on `split.train`, selects on `split.validation`, saves the model in
/// `out_dir` and scores it on `split.test`.
pub fn run(
    out_dir: &Path,
    corpus: &LoadedCorpus,
    split: &Split,
    config: &ExperimentConfig,
    resume: bool,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> Result<FoldResult, ExperimentError> {
    let write = |name: &str, bytes: &[u8]| {
        let path = out_dir.join(name);
        persist::write_atomic(&path, bytes).map_err(|source| ExperimentError::Write { path, source })
    };
    let pick = |indices: &[usize]| -> (Vec<&Clip>, Vec<&ClipAudio>) {
        indices.iter().map(|&i| (&corpus.clips[i], &corpus.audio[i])).unzip()
    };
    let (train_clips, train_audio) = pick(&split.train);
    let labels = examples::label_list(train_clips.iter().map(|c| c.label.as_str()));
    let feature_stats = FeatureStats::fit(train_audio.iter().map(|a| &a.features));
    let mut training = config.training.clone();
    training.model.n_classes = labels.len();
    let backbone = training.model.temporal.backbone.clone();
    let has_temporal = training.model.kind.has_temporal();
    let preprocessor = has_temporal.then(|| backbone.preprocessor());
    // A teacher hears each training clip's audio.
    let keep_raw = training.augment.changes_audio() || training.distillation.is_some();
    let make = |indices: &[usize], raw: bool| {
        let (clips, audio) = pick(indices);
        // A clip whose label the training set lacks cannot be scored (see `unscored_test_clips`).
        let known: Vec<usize> = (0..clips.len()).filter(|&i| labels.contains(&clips[i].label)).collect();
        let clips: Vec<&Clip> = known.iter().map(|&i| clips[i]).collect();
        let audio: Vec<&ClipAudio> = known.iter().map(|&i| audio[i]).collect();
        let made = examples::examples(
            &clips,
            &audio,
            &labels,
            feature_stats.as_ref(),
            preprocessor.as_ref(),
            raw,
        );
        (clips, made)
    };
    let (train_clips, mut train_examples) = make(&split.train, keep_raw);
    let (validation_clips, mut validation_examples) = make(&split.validation, false);
    let noise = match &training.augment.noise {
        Some(config) => Some((NoiseBank::load(&config.dir)?.split(training.seed).0, config.clone())),
        None => None,
    };
    let mut wave_augment = keep_raw.then(|| WaveAugment {
        speeds: training.augment.speeds.clone(),
        noise,
        extractor: crate::features::FeatureExtractor::new(crate::features::FeatureConfig::default())
            .expect("the default feature configuration is valid"),
        stats: feature_stats.clone(),
        preprocessor: preprocessor.clone(),
    });
    write("split.json", &split_json(corpus, split))?;

    let pretrained = match (&backbone, has_temporal) {
        (
            BackboneConfig::Wav2vec2 {
                path, finetune: true, ..
            },
            true,
        ) => Some(wav2vec2::load(path, &burn::tensor::Device::flex().autodiff())?.0),
        _ => None,
    };
    let frozen = (has_temporal && !backbone.is_trained())
        .then(|| FrozenBackbone::load(&backbone, &burn::tensor::Device::flex()))
        .transpose()?;
    let teacher = training
        .distillation
        .as_ref()
        .map(|distillation| load_teacher(Path::new(&distillation.teacher), split, &labels))
        .transpose()?;
    // Noise reaches a frozen encoder and a teacher only through fixed noisy
    // copies of each training clip, made once (seeded by clip and copy):
    // their hidden states are cached, and the teacher labels what the student hears.
    let fixed_audio = frozen.is_some() || teacher.is_some();
    let mut train_keys = if fixed_audio {
        content_keys(&train_clips)?
    } else {
        Vec::new()
    };
    if fixed_audio && let Some(augment) = wave_augment.as_ref().filter(|a| a.noise.is_some()) {
        let (copies, copy_keys) = noisy_copies(augment, &train_examples, &train_keys, training.seed);
        train_examples.extend(copies);
        train_keys.extend(copy_keys);
    }
    if let Some(frozen) = &frozen {
        // A frozen encoder gives the same hidden states every epoch: computed
        // once, and kept on disk for the next run and fold.
        let cache = FeatureCache::open_keyed(config.cache_dir.join("hidden"), &backbone.identity())?;
        attach_hidden_states(&train_keys, &mut train_examples, frozen, &cache, on_event)?;
        let validation_keys = content_keys(&validation_clips)?;
        attach_hidden_states(&validation_keys, &mut validation_examples, frozen, &cache, on_event)?;
    }
    let teacher_probabilities = match &teacher {
        Some(teacher) => {
            // Noise mixed in later would change a clip after the teacher heard it.
            if let Some(augment) = &mut wave_augment {
                augment.noise = None;
            }
            Some(teacher_probabilities(
                teacher,
                &train_examples,
                &train_clips,
                &labels,
                on_event,
            )?)
        }
        None => None,
    };
    let data = TrainingData {
        train: &train_examples,
        validation: &validation_examples,
        n_classes: labels.len(),
        teacher: teacher_probabilities.as_deref(),
    };
    let outcome = train::train(
        out_dir,
        &training,
        &data,
        frozen.as_ref(),
        pretrained,
        wave_augment.as_ref().map(|a| a as &dyn train::AudioAugment),
        resume,
        stop,
        on_event,
    )?;
    if outcome.interrupted {
        return Err(ExperimentError::Interrupted);
    }
    let train_seconds = outcome.logs.iter().map(|log| log.seconds).sum();
    let mut model_config = ModelConfig {
        format: saved::FORMAT.into(),
        model: training.model.clone(),
        features: crate::features::FeatureConfig::default(),
        feature_stats: feature_stats.clone(),
        labels: labels.clone(),
        embedding_means: EmbeddingMeans::default(),
        training: Some(Provenance {
            command: config.command.clone(),
            data: corpus.sources.clone(),
            fold: Some(split.name.clone()),
            seed: training.seed,
            version: env!("CARGO_PKG_VERSION").into(),
            commit: option_env!("EMOFUSE_COMMIT").unwrap_or("unknown").into(),
            train_clips: split.train.len(),
            validation_clips: split.validation.len(),
            validation: split.validation_description.clone(),
            epochs_run: outcome.logs.len(),
            best_epoch: outcome.best_epoch,
            best_validation_ua: outcome.best_validation_ua,
            seconds: train_seconds,
        }),
    };
    let predictor = Predictor::from_parts(model_config.clone(), outcome.model.clone())?;
    model_config.embedding_means = embedding_means(&predictor, &train_examples);
    saved::save(out_dir, &model_config, &outcome.model, config.half)?;
    let predictor = Predictor::from_parts(model_config, outcome.model)?;

    let (_, test_examples) = make(&split.test, false);
    let unscored_test_clips = split.test.len() - test_examples.len();
    let test = (!test_examples.is_empty()).then(|| {
        let probabilities = predictor.probabilities(&test_examples);
        let truth: Vec<usize> = test_examples.iter().map(|e| e.label).collect();
        Metrics::compute(&truth, &argmax_rows(&probabilities, labels.len()), labels.len())
    });
    let result = FoldResult {
        split: split.name.clone(),
        model_dir: out_dir.to_owned(),
        labels,
        test,
        unscored_test_clips,
        best_epoch: outcome.best_epoch,
        best_validation_ua: outcome.best_validation_ua,
        train_seconds,
    };
    write(
        RESULT_FILE,
        &serde_json::to_vec_pretty(&result).expect("results serialise"),
    )?;
    Ok(result)
}

/// The teacher model in `dir`, checked to know every label and, when the
/// split has test clips, to have been trained on this same split (a teacher
/// that heard the test speakers would leak them into the student).
fn load_teacher(dir: &Path, split: &Split, labels: &[String]) -> Result<Predictor, ExperimentError> {
    let problem = |problem: String| ExperimentError::Teacher {
        dir: dir.to_owned(),
        problem,
    };
    let teacher = Predictor::load(dir)?;
    let missing: Vec<&str> = labels
        .iter()
        .filter(|l| !teacher.labels().contains(l))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(problem(format!("it does not know the labels {}", missing.join(", "))));
    }
    if !split.test.is_empty() {
        let teacher_split = teacher.config().training.as_ref().and_then(|p| p.fold.clone());
        if teacher_split.as_deref() != Some(split.name.as_str()) {
            return Err(problem(format!(
                "it was trained on {}, not on this split ({}); it may have heard the test speakers",
                teacher_split.as_deref().unwrap_or("an unrecorded split"),
                split.name
            )));
        }
    }
    Ok(teacher)
}

/// The teacher's probabilities of each example (from its audio), in the order of `labels`.
fn teacher_probabilities(
    teacher: &Predictor,
    examples: &[Example],
    clips: &[&Clip],
    labels: &[String],
    on_event: &mut dyn FnMut(Event),
) -> Result<Vec<Vec<f32>>, ExperimentError> {
    let columns: Vec<usize> = labels
        .iter()
        .map(|label| {
            teacher
                .labels()
                .iter()
                .position(|l| l == label)
                .expect("checked by load_teacher")
        })
        .collect();
    let n_classes = teacher.labels().len();
    let mut rows = Vec::with_capacity(examples.len());
    for (done, chunk) in examples.chunks(16).enumerate() {
        let inputs = chunk
            .iter()
            .enumerate()
            .map(|(k, example)| {
                let samples = example
                    .raw
                    .as_ref()
                    .expect("a teacher's examples keep their audio")
                    .to_vec();
                let name = match clips.get(done * 16 + k) {
                    Some(clip) => clip.path.display().to_string(),
                    None => "a noisy copy of a training clip".to_owned(),
                };
                teacher.example(
                    &Waveform {
                        samples,
                        sample_rate: crate::audio::SAMPLE_RATE,
                    },
                    &name,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        for row in teacher.probabilities(&inputs).chunks_exact(n_classes) {
            rows.push(columns.iter().map(|&j| row[j]).collect());
        }
        on_event(Event::Teacher {
            done: (done * 16 + chunk.len()),
            total: examples.len(),
        });
    }
    Ok(rows)
}

/// Mean pooled embedding of each stream over `examples` (SHAP's baseline).
fn embedding_means(predictor: &Predictor, examples: &[crate::data::batcher::Example]) -> EmbeddingMeans {
    let mut sums: [Option<Vec<f64>>; 2] = [None, None];
    for chunk in examples.chunks(16) {
        let refs: Vec<_> = chunk.iter().collect();
        let output = predictor.forward(&refs);
        for (slot, stream) in sums.iter_mut().zip([output.spectral, output.temporal]) {
            if let Some(stream) = stream {
                let values: Vec<f32> = stream
                    .embedding
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec()
                    .expect("f32");
                let d = values.len() / chunk.len();
                let sum = slot.get_or_insert_with(|| vec![0.0; d]);
                for row in values.chunks_exact(d) {
                    for (s, &v) in sum.iter_mut().zip(row) {
                        *s += f64::from(v);
                    }
                }
            }
        }
    }
    let mean = |sum: Option<Vec<f64>>| sum.map(|s| s.iter().map(|v| (v / examples.len() as f64) as f32).collect());
    let [spectral, temporal] = sums;
    EmbeddingMeans {
        spectral: mean(spectral),
        temporal: mean(temporal),
    }
}

fn split_json(corpus: &LoadedCorpus, split: &Split) -> Vec<u8> {
    let paths = |indices: &[usize]| -> Vec<String> {
        indices
            .iter()
            .map(|&i| corpus.clips[i].path.display().to_string())
            .collect()
    };
    let value = serde_json::json!({
        "name": split.name,
        "validation": split.validation_description,
        "train": paths(&split.train),
        "validation_clips": paths(&split.validation),
        "test": paths(&split.test),
    });
    serde_json::to_vec_pretty(&value).expect("a split serialises")
}

/// Noisy copies of a frozen encoder's training clips made per clean clip.
const NOISY_COPIES: u64 = 2;

/// The content hash of each clip's file: its cache key.
fn content_keys(clips: &[&Clip]) -> Result<Vec<blake3::Hash>, ExperimentError> {
    clips
        .iter()
        .map(|clip| {
            FeatureCache::content_hash(&clip.path).map_err(|source| ExperimentError::Hash {
                path: clip.path.clone(),
                source,
            })
        })
        .collect()
}

/// [`NOISY_COPIES`] noise-mixed copies of every training example, and their
/// cache keys (clip content, copy, seed and the noise settings and pool).
fn noisy_copies(
    augment: &WaveAugment,
    examples: &[Example],
    keys: &[blake3::Hash],
    seed: u64,
) -> (Vec<Example>, Vec<blake3::Hash>) {
    let (bank, noise) = augment.noise.as_ref().expect("a noise corpus");
    let mut setting = blake3::Hasher::new();
    setting.update(format!("{:?} {:?} {:?}", noise.dir, noise.snr_db, noise.reference).as_bytes());
    for clip in &bank.clips {
        setting.update(clip.path.to_string_lossy().as_bytes());
    }
    let setting = setting.finalize();
    let made: Vec<(Example, blake3::Hash)> = (1..=NOISY_COPIES)
        .flat_map(|copy| {
            examples
                .iter()
                .zip(keys)
                .map(move |(example, key)| (copy, example, key))
        })
        .collect::<Vec<_>>()
        .into_par_iter()
        .filter_map(|(copy, example, key)| {
            let mut id = blake3::Hasher::new();
            id.update(key.as_bytes());
            id.update(setting.as_bytes());
            id.update(&copy.to_le_bytes());
            id.update(&seed.to_le_bytes());
            let id = id.finalize();
            let mut rng = ChaCha8Rng::from_seed(*id.as_bytes());
            augment.noisy_copy(example, &mut rng).map(|e| (e, id))
        })
        .collect();
    made.into_iter().unzip()
}

/// Fills in each example's hidden states from the cache (`keys[i]` is
/// example `i`'s), computing (in batches of clips of similar length) and
/// storing the missing ones.
fn attach_hidden_states(
    keys: &[blake3::Hash],
    examples: &mut [Example],
    frozen: &FrozenBackbone,
    cache: &FeatureCache,
    on_event: &mut dyn FnMut(Event),
) -> Result<(), ExperimentError> {
    let mut missing = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        match cache.get(key) {
            Some(matrix) => examples[i].hidden = Some(std::sync::Arc::new(from_matrix(matrix, frozen_layers(frozen)))),
            None => missing.push(i),
        }
    }
    missing.sort_by_key(|&i| examples[i].samples.as_ref().map_or(0, |s| s.len()));
    let device = burn::tensor::Device::flex();
    let total = missing.len();
    for (done, batch) in missing.chunks(8).enumerate() {
        let samples: Vec<&[f32]> = batch
            .iter()
            .map(|&i| {
                examples[i]
                    .samples
                    .as_ref()
                    .expect("temporal examples carry samples")
                    .as_slice()
            })
            .collect();
        let (states, n_frames) = frozen.hidden_states(&samples, &device);
        let layers: Vec<Vec<f32>> = states
            .into_iter()
            .map(|t| {
                t.into_data()
                    .convert::<f32>()
                    .try_into_vec()
                    .expect("f32 hidden states")
            })
            .collect();
        let width = layers[0].len() / batch.len();
        let hidden = width / n_frames.iter().copied().max().unwrap_or(1).max(1);
        for (k, &i) in batch.iter().enumerate() {
            let frames = n_frames[k];
            let mut data = Vec::with_capacity(layers.len() * frames * hidden);
            for layer in &layers {
                data.extend_from_slice(&layer[k * width..k * width + frames * hidden]);
            }
            let states = HiddenStates {
                layers: layers.len(),
                frames,
                hidden,
                data,
            };
            cache.put(&keys[i], &to_matrix(&states))?;
            examples[i].hidden = Some(std::sync::Arc::new(states));
        }
        on_event(Event::HiddenStates {
            done: ((done + 1) * 8).min(total),
            total,
        });
    }
    Ok(())
}

fn frozen_layers(frozen: &FrozenBackbone) -> usize {
    match frozen {
        FrozenBackbone::Wav2vec2 { encoder, .. } => encoder.config.num_hidden_layers + 1,
        FrozenBackbone::Whisper { encoder, .. } => encoder.config.encoder_layers + 1,
    }
}

/// Hidden states as a cache entry: rows `layers · hidden`, one column per frame
/// (the values keep their `[layers, frames, hidden]` order).
fn to_matrix(states: &HiddenStates) -> crate::features::FrameFeatures {
    crate::features::FrameFeatures {
        n_features: states.layers * states.hidden,
        n_frames: states.frames,
        data: states.data.clone(),
    }
}

fn from_matrix(matrix: crate::features::FrameFeatures, layers: usize) -> HiddenStates {
    HiddenStates {
        layers,
        frames: matrix.n_frames,
        hidden: matrix.n_features / layers,
        data: matrix.data,
    }
}
