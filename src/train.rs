//! Training one model on one split: AdamW with warm-up and a cosine or
//! plateau schedule, class-weighted loss or balanced sampling, gradient
//! clipping, early stopping on a validation split of the training speakers,
//! and crash-safe checkpoints from which a killed run resumes to the same
//! final weights.
//!
//! Everything random is a function of the seed and the position in the run:
//! the shuffle of epoch `e` is seeded by `(seed, e)`, and the backend's
//! generator (dropout) is re-seeded before batch `b` of epoch `e` by
//! `(seed, e, b)`. A checkpoint therefore only needs the weights, the
//! optimizer state and a few counters to continue exactly where it stopped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::store::ModuleRecord;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bytes, Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::batcher::{self, Example};
use crate::eval::{Metrics, argmax_rows};
use crate::model::fusion::{EmotionModel, EmotionModelConfig, ModelInput, TemporalInput};
use crate::model::temporal::FrozenBackbone;
use crate::model::wav2vec2::Wav2Vec2;
use crate::persist;

/// Everything that decides what a training run computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingConfig {
    pub model: EmotionModelConfig,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f32,
    /// Linear warm-up from 0, in epochs.
    pub warmup_epochs: f64,
    pub schedule: Schedule,
    pub balance: Balance,
    /// Gradients are clipped to this norm, parameter by parameter (burn's clipping).
    pub grad_clip_norm: Option<f32>,
    /// Stop after this many epochs without a better validation UA.
    pub patience: Option<usize>,
    pub augment: Augment,
    pub seed: u64,
    /// Soft targets from a teacher model mixed into the loss.
    #[serde(default)]
    pub distillation: Option<Distillation>,
}

/// Knowledge distillation (Hinton et al. 2015): the loss is
/// `(1 − weight) · CE(labels) + weight · T² · CE(teacher_T, student_T)`,
/// where `·_T` are softmaxes at temperature `T`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distillation {
    /// The teacher's model folder (provenance; its probabilities come with the data).
    pub teacher: String,
    pub weight: f64,
    pub temperature: f64,
}

/// Changes a training example's audio (and rebuilds what the model sees).
pub trait AudioAugment: Sync {
    fn augment(&self, example: &Example, rng: &mut ChaCha8Rng) -> Example;
}

/// Random changes to training examples, drawn anew each epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Speed perturbation factors, one drawn per clip (empty: none).
    pub speeds: Vec<f64>,
    /// Real-noise mixing at random SNRs (`emofuse train --noise-dir`).
    pub noise: Option<crate::noise::NoiseAugmentConfig>,
    /// SpecAugment on the standardised frame features: this many spans of
    /// frames set to the mean (0), each up to `time_mask_share` of the clip.
    pub time_masks: usize,
    pub time_mask_share: f64,
    /// This many bands of up to `feature_mask_width` consecutive feature rows set to 0.
    pub feature_masks: usize,
    pub feature_mask_width: usize,
}

impl Augment {
    /// No augmentation.
    pub fn none() -> Augment {
        Augment {
            speeds: Vec::new(),
            noise: None,
            time_masks: 0,
            time_mask_share: 0.0,
            feature_masks: 0,
            feature_mask_width: 0,
        }
    }

    /// Whether clips need their audio for waveform augmentation.
    pub fn changes_audio(&self) -> bool {
        self.speeds.iter().any(|&s| s != 1.0) || self.noise.is_some()
    }

    /// A changed copy of `example`: its audio by `audio`, then SpecAugment.
    fn apply(&self, example: &Example, audio: Option<&dyn AudioAugment>, rng: &mut ChaCha8Rng) -> Example {
        use rand::Rng;
        let mut example = match audio {
            Some(audio) => audio.augment(example, rng),
            None => example.clone(),
        };
        if let Some(features) = &mut example.features {
            let (rows, frames) = (features.n_features, features.n_frames);
            for _ in 0..self.time_masks {
                let width = rng.random_range(0..=((frames as f64 * self.time_mask_share) as usize).min(frames));
                let start = rng.random_range(0..=frames - width);
                for row in features.data.chunks_exact_mut(frames) {
                    row[start..start + width].fill(0.0);
                }
            }
            for _ in 0..self.feature_masks {
                let width = rng.random_range(0..=self.feature_mask_width.min(rows));
                let start = rng.random_range(0..=rows - width);
                features.data[start * frames..(start + width) * frames].fill(0.0);
            }
        }
        example
    }
}

/// How the learning rate moves after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Schedule {
    /// Cosine decay to 1 % of the peak at the last epoch.
    Cosine,
    /// Multiply by `factor` after `patience` epochs without a better validation UA.
    Plateau { patience: usize, factor: f64 },
}

/// How unequal class sizes are compensated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Loss weights inversely proportional to class frequency.
    ClassWeights,
    /// Each epoch draws as many clips per class (with replacement for small classes).
    Sampling,
    None,
}

/// The examples of one run; labels index the model's class list.
pub struct TrainingData<'a> {
    pub train: &'a [Example],
    pub validation: &'a [Example],
    pub n_classes: usize,
    /// The teacher's class probabilities of each training example, `[example][class]`
    /// (with [`TrainingConfig::distillation`]).
    pub teacher: Option<&'a [Vec<f32>]>,
}

/// One epoch's numbers, as written to `train_log.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub learning_rate: f64,
    pub validation_loss: Option<f64>,
    pub validation_ua: Option<f64>,
    pub validation_wa: Option<f64>,
    pub seconds: f64,
    /// Whether this epoch's weights are the best so far (kept as the result).
    pub best: bool,
}

/// What the caller is told while training runs.
#[derive(Debug, Clone)]
pub enum Event {
    Started {
        epochs: usize,
        batches_per_epoch: usize,
        resumed_at: Option<(usize, usize)>,
    },
    Batch {
        epoch: usize,
        batch: usize,
        loss: f64,
    },
    Epoch(EpochLog),
    /// A frozen encoder's hidden states are being computed (before training).
    HiddenStates {
        done: usize,
        total: usize,
    },
    /// The teacher is labelling the training clips (before training).
    Teacher {
        done: usize,
        total: usize,
    },
}

/// How a run ended.
pub struct Outcome {
    /// The weights of the best epoch (the last one without validation).
    pub model: EmotionModel,
    pub logs: Vec<EpochLog>,
    pub best_epoch: usize,
    pub best_validation_ua: Option<f64>,
    /// `true` when stopped by the caller's flag (Ctrl-C) before the end.
    pub interrupted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: damaged checkpoint ({detail})", path.display())]
    Checkpoint { path: PathBuf, detail: String },
    #[error("{}: the checkpoint was made with other training settings; train again without --resume", path.display())]
    ConfigChanged { path: PathBuf },
    #[error("no training examples")]
    NoData,
}

/// File names inside a run directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.bin";
pub const LOG_FILE: &str = "train_log.jsonl";

/// Where training stands: what a checkpoint stores beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunState {
    config: TrainingConfig,
    /// Epochs finished.
    epoch: usize,
    /// Batches of epoch `epoch` already done (non-zero after an interruption mid-epoch).
    batch: usize,
    /// Running loss sum of the current epoch's finished batches.
    loss_sum: f64,
    step: usize,
    best_ua: Option<f64>,
    best_epoch: usize,
    epochs_since_best: usize,
    /// Plateau schedule: the current multiplier of the learning rate.
    lr_scale: f64,
    seconds: f64,
    logs: Vec<EpochLog>,
}

/// Trains `config.model` in `run_dir` (created if needed), resuming from its
/// checkpoint when `resume` is set. `frozen` computes the temporal stream's
/// hidden states when its encoder is not trained; `encoder` is a pretrained
/// encoder to fine-tune; `audio` changes training clips' audio (it must be
/// the one `config.augment` describes). `stop` is polled after every batch: when it is set,
/// the position is checkpointed and the run returns.
#[allow(clippy::too_many_arguments)]
pub fn train(
    run_dir: &Path,
    config: &TrainingConfig,
    data: &TrainingData,
    frozen: Option<&FrozenBackbone>,
    encoder: Option<Wav2Vec2>,
    audio: Option<&dyn AudioAugment>,
    resume: bool,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> Result<Outcome, TrainError> {
    if data.train.is_empty() {
        return Err(TrainError::NoData);
    }
    let plain = Device::flex();
    let device = plain.clone().autodiff();
    let checkpoint_path = run_dir.join(CHECKPOINT_FILE);
    let batches_per_epoch = data.train.len().div_ceil(config.batch_size);
    let class_weights = class_weights(data, config.balance);

    device.seed(config.seed);
    let mut model = config.model.init(encoder, &device);
    let mut optimizer = optimizer(config);
    let mut state = RunState {
        config: config.clone(),
        epoch: 0,
        batch: 0,
        loss_sum: 0.0,
        step: 0,
        best_ua: None,
        best_epoch: 0,
        epochs_since_best: 0,
        lr_scale: 1.0,
        seconds: 0.0,
        logs: Vec::new(),
    };
    let mut best: Option<Vec<u8>> = None;
    persist::remove_stale_temporaries(run_dir);
    if resume && checkpoint_path.is_file() {
        let checkpoint = Checkpoint::read(&checkpoint_path)?;
        if canonical(&checkpoint.state.config) != canonical(config) {
            return Err(TrainError::ConfigChanged { path: checkpoint_path });
        }
        let bad = |detail: String| TrainError::Checkpoint {
            path: checkpoint_path.clone(),
            detail,
        };
        let record =
            ModuleRecord::from_bytes(Bytes::from_bytes_vec(checkpoint.model)).map_err(|e| bad(e.to_string()))?;
        model = model.try_load_record(record).map_err(|e| bad(e.to_string()))?;
        let record = burn::optim::OptimizerRecord::from_bytes(Bytes::from_bytes_vec(checkpoint.optimizer))
            .map_err(|e| bad(e.to_string()))?;
        optimizer = optimizer.load_record(record);
        best = checkpoint.best;
        state = checkpoint.state;
    }
    write_log(run_dir, &state.logs)?;
    on_event(Event::Started {
        epochs: config.epochs,
        batches_per_epoch,
        resumed_at: (state.epoch > 0 || state.batch > 0).then_some((state.epoch, state.batch)),
    });

    let mut interrupted = false;
    while state.epoch < config.epochs && !should_stop_early(config, &state) {
        let started = Instant::now();
        let order = epoch_order(data, config, state.epoch);
        for (b, batch) in order.chunks(config.batch_size).enumerate().skip(state.batch) {
            if stop.load(Ordering::Relaxed) {
                interrupted = true;
                break;
            }
            device.seed(mix(config.seed, state.epoch as u64, b as u64));
            let augmented: Vec<Example> = batch
                .par_iter()
                .enumerate()
                .map(|(k, &i)| {
                    let draw = mix(config.seed, (state.epoch * batches_per_epoch + b) as u64, k as u64);
                    config
                        .augment
                        .apply(&data.train[i], audio, &mut ChaCha8Rng::seed_from_u64(draw))
                })
                .collect();
            let examples: Vec<&Example> = augmented.iter().collect();
            let input = model_input(&config.model, &examples, frozen, &device);
            let labels = batcher::labels(&examples, &device);
            let output = model.forward(input);
            let loss = match (&config.distillation, data.teacher) {
                (Some(distillation), Some(teacher)) => {
                    let targets = soft_targets(batch.iter().map(|&i| &teacher[i]), distillation.temperature, &device);
                    distillation_loss(output.logits, labels, targets, &class_weights, distillation, &device)
                }
                _ => cross_entropy(output.logits, labels, &class_weights, &device),
            };
            let loss_value = f64::from(loss.clone().into_scalar::<f32>());
            let gradients = GradientsParams::from_grads(loss.backward(), &model);
            let lr = learning_rate(config, &state, batches_per_epoch);
            model = optimizer.step(lr, model, gradients);
            state.step += 1;
            state.batch = b + 1;
            state.loss_sum += loss_value;
            on_event(Event::Batch {
                epoch: state.epoch,
                batch: b,
                loss: loss_value,
            });
        }
        state.seconds += started.elapsed().as_secs_f64();
        if interrupted {
            Checkpoint::write(&checkpoint_path, &state, &model, &optimizer, best.as_deref())?;
            break;
        }
        let validation = (!data.validation.is_empty()).then(|| {
            evaluate_examples(
                &model.valid(),
                &config.model,
                data.validation,
                frozen,
                &plain,
                &class_weights,
            )
        });
        let ua = validation.as_ref().map(|(metrics, _)| metrics.ua);
        let improved = match (ua, state.best_ua) {
            (Some(ua), Some(best_ua)) => ua > best_ua,
            (Some(_), None) => true,
            // Without validation the last epoch is the result.
            (None, _) => true,
        };
        if improved {
            state.best_ua = ua;
            state.best_epoch = state.epoch + 1;
            state.epochs_since_best = 0;
            best = Some(model_bytes(&model)?);
        } else {
            state.epochs_since_best += 1;
            if let Schedule::Plateau { patience, factor } = config.schedule
                && state.epochs_since_best.is_multiple_of(patience.max(1))
            {
                state.lr_scale *= factor;
            }
        }
        let log = EpochLog {
            epoch: state.epoch + 1,
            train_loss: state.loss_sum / batches_per_epoch as f64,
            learning_rate: learning_rate(config, &state, batches_per_epoch),
            validation_loss: validation.as_ref().map(|(_, loss)| *loss),
            validation_ua: ua,
            validation_wa: validation.as_ref().map(|(metrics, _)| metrics.wa),
            seconds: state.seconds,
            best: improved,
        };
        state.logs.push(log.clone());
        state.epoch += 1;
        state.batch = 0;
        state.loss_sum = 0.0;
        state.seconds = 0.0;
        Checkpoint::write(&checkpoint_path, &state, &model, &optimizer, best.as_deref())?;
        write_log(run_dir, &state.logs)?;
        on_event(Event::Epoch(log));
    }

    let model = match &best {
        Some(bytes) if !interrupted => {
            let record =
                ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.clone())).map_err(|e| TrainError::Checkpoint {
                    path: checkpoint_path.clone(),
                    detail: e.to_string(),
                })?;
            model.try_load_record(record).map_err(|e| TrainError::Checkpoint {
                path: checkpoint_path.clone(),
                detail: e.to_string(),
            })?
        }
        _ => model,
    };
    Ok(Outcome {
        model: model.valid(),
        logs: state.logs,
        best_epoch: state.best_epoch,
        best_validation_ua: state.best_ua,
        interrupted,
    })
}

/// A configuration as it reads back from JSON: burn's config deserialiser
/// rounds some floats, so a stored configuration is compared in this form.
fn canonical(config: &TrainingConfig) -> Option<serde_json::Value> {
    let value = serde_json::to_value(config).ok()?;
    let read_back: TrainingConfig = serde_json::from_value(value).ok()?;
    serde_json::to_value(read_back).ok()
}

fn should_stop_early(config: &TrainingConfig, state: &RunState) -> bool {
    config
        .patience
        .is_some_and(|patience| state.epochs_since_best >= patience)
        && state.batch == 0
}

fn optimizer(config: &TrainingConfig) -> burn::optim::ModuleOptimizer {
    let mut adamw = AdamWConfig::new().with_weight_decay(config.weight_decay);
    if let Some(norm) = config.grad_clip_norm {
        adamw = adamw.with_grad_clipping(Some(burn::grad_clipping::GradientClippingConfig::Norm(norm)));
    }
    adamw.init()
}

/// Warm-up, then cosine decay or the plateau multiplier.
fn learning_rate(config: &TrainingConfig, state: &RunState, batches_per_epoch: usize) -> f64 {
    let warmup = (config.warmup_epochs * batches_per_epoch as f64).max(1.0);
    let step = state.step as f64;
    if step < warmup {
        return config.learning_rate * (step + 1.0) / warmup;
    }
    match config.schedule {
        Schedule::Cosine => {
            let total = (config.epochs * batches_per_epoch) as f64;
            let progress = ((step - warmup) / (total - warmup).max(1.0)).min(1.0);
            let floor = 0.01 * config.learning_rate;
            floor + (config.learning_rate - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
        Schedule::Plateau { .. } => config.learning_rate * state.lr_scale,
    }
}

/// The training clips of epoch `epoch`, in the order they are seen.
fn epoch_order(data: &TrainingData, config: &TrainingConfig, epoch: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(mix(config.seed, epoch as u64, u64::MAX));
    let mut order: Vec<usize> = match config.balance {
        Balance::Sampling => {
            let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); data.n_classes];
            for (i, example) in data.train.iter().enumerate() {
                by_class[example.label].push(i);
            }
            let present: Vec<&Vec<usize>> = by_class.iter().filter(|c| !c.is_empty()).collect();
            let per_class = data.train.len().div_ceil(present.len());
            present
                .iter()
                .flat_map(|members| {
                    let mut drawn: Vec<usize> = (0..per_class).map(|k| members[k % members.len()]).collect();
                    drawn.shuffle(&mut rng);
                    drawn
                })
                .collect()
        }
        Balance::ClassWeights | Balance::None => (0..data.train.len()).collect(),
    };
    order.shuffle(&mut rng);
    // Sort within runs of a few batches by length: batches hold clips of
    // similar length (less padding) while the order stays random.
    for run in order.chunks_mut(config.batch_size * 8) {
        run.sort_by_key(|&i| example_length(&data.train[i]));
    }
    let mut batches: Vec<Vec<usize>> = order.chunks(config.batch_size).map(<[usize]>::to_vec).collect();
    batches.shuffle(&mut rng);
    batches.concat()
}

fn example_length(example: &Example) -> usize {
    match (&example.features, &example.samples) {
        (Some(features), _) => features.n_frames,
        (None, Some(samples)) => samples.len(),
        (None, None) => 0,
    }
}

/// Per-class loss weights: inverse frequency, mean 1 over present classes.
fn class_weights(data: &TrainingData, balance: Balance) -> Vec<f32> {
    if balance != Balance::ClassWeights {
        return vec![1.0; data.n_classes];
    }
    let mut counts = vec![0usize; data.n_classes];
    for example in data.train {
        counts[example.label] += 1;
    }
    let present = counts.iter().filter(|&&c| c > 0).count() as f64;
    let total = data.train.len() as f64;
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                (total / (present * c as f64)) as f32
            }
        })
        .collect()
}

/// Weighted mean of `−log p(label)`.
fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>, class_weights: &[f32], device: &Device) -> Tensor<1> {
    let weights = Tensor::<1>::from_data(TensorData::new(class_weights.to_vec(), [class_weights.len()]), device);
    let weights = weights.select(0, labels.clone()); // [b]
    let log_probs = log_softmax(logits, 1); // [b, classes]
    let picked = log_probs.gather(1, labels.unsqueeze_dim::<2>(1)).squeeze_dim::<1>(1); // [b]
    (picked * weights.clone()).sum().neg() / weights.sum()
}

/// The teacher's probabilities `p` sharpened or softened to temperature `t`
/// (`p^(1/t)`, renormalised: the softmax of its logits over `t`), `[batch, classes]`.
fn soft_targets<'a>(rows: impl Iterator<Item = &'a Vec<f32>>, t: f64, device: &Device) -> Tensor<2> {
    let mut values = Vec::new();
    let mut n_rows = 0;
    for row in rows {
        let tempered: Vec<f64> = row.iter().map(|&p| f64::from(p.max(1e-12)).powf(1.0 / t)).collect();
        let total: f64 = tempered.iter().sum();
        values.extend(tempered.iter().map(|&v| (v / total) as f32));
        n_rows += 1;
    }
    let n_classes = values.len() / n_rows.max(1);
    Tensor::from_data(TensorData::new(values, [n_rows, n_classes]), device)
}

/// `(1 − w) · CE(labels) + w · T² · CE(targets, softmax(logits / T))`; the
/// `T²` keeps the soft term's gradients on the hard term's scale.
fn distillation_loss(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    targets: Tensor<2>,
    class_weights: &[f32],
    distillation: &Distillation,
    device: &Device,
) -> Tensor<1> {
    let (w, t) = (distillation.weight, distillation.temperature);
    let batch = logits.dims()[0] as f64;
    let hard = cross_entropy(logits.clone(), labels, class_weights, device);
    let soft = (targets * log_softmax(logits / t, 1)).sum().neg() / batch;
    hard * (1.0 - w) + soft * (w * t * t)
}

/// The model's input for a batch of examples on `device`.
pub fn model_input(
    config: &EmotionModelConfig,
    examples: &[&Example],
    frozen: Option<&FrozenBackbone>,
    device: &Device,
) -> ModelInput {
    let frame_multiple = 1 << config.spectral.channels.len().saturating_sub(1);
    let features = config
        .kind
        .has_spectral()
        .then(|| batcher::features(examples, frame_multiple, device));
    let temporal = config.kind.has_temporal().then(|| match frozen {
        _ if examples.iter().all(|e| e.hidden.is_some()) => {
            let (states, n_frames) = batcher::hidden_states(examples, device);
            TemporalInput::Hidden { states, n_frames }
        }
        Some(backbone) => {
            let clips: Vec<&[f32]> = examples
                .iter()
                .map(|e| e.samples.as_ref().expect("temporal examples carry samples").as_slice())
                .collect();
            let (states, n_frames) = backbone.hidden_states(&clips, device);
            TemporalInput::Hidden { states, n_frames }
        }
        None => {
            let (samples, n_samples) = batcher::samples(examples, device);
            TemporalInput::Waveform {
                samples: Box::new(samples),
                n_samples,
            }
        }
    });
    ModelInput { features, temporal }
}

/// Class probabilities of `examples`, in batches: `[clips][classes]`.
pub fn predict_examples(
    model: &EmotionModel,
    config: &EmotionModelConfig,
    examples: &[Example],
    frozen: Option<&FrozenBackbone>,
    device: &Device,
) -> Vec<f32> {
    let mut probabilities = Vec::with_capacity(examples.len() * config.n_classes);
    for chunk in examples.chunks(16) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let logits = model.forward(model_input(config, &refs, frozen, device)).logits;
        let probs = burn::tensor::activation::softmax(logits, 1);
        probabilities.extend(
            probs
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("f32 probabilities"),
        );
    }
    probabilities
}

/// Metrics and mean loss of a (validation-mode) model on `examples`.
fn evaluate_examples(
    model: &EmotionModel,
    config: &EmotionModelConfig,
    examples: &[Example],
    frozen: Option<&FrozenBackbone>,
    device: &Device,
    class_weights: &[f32],
) -> (Metrics, f64) {
    let probabilities = predict_examples(model, config, examples, frozen, device);
    let truth: Vec<usize> = examples.iter().map(|e| e.label).collect();
    let predicted = argmax_rows(&probabilities, config.n_classes);
    let (mut loss, mut weight) = (0.0, 0.0);
    for (row, &label) in probabilities.chunks_exact(config.n_classes).zip(&truth) {
        let w = f64::from(class_weights[label]);
        loss -= w * f64::from(row[label].max(1e-12)).ln();
        weight += w;
    }
    (
        Metrics::compute(&truth, &predicted, config.n_classes),
        loss / weight.max(1e-12),
    )
}

/// Mixes seeds and counters into one seed (SplitMix64 steps).
fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut x = seed;
    for v in [a, b] {
        x = x.wrapping_add(v).wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
    }
    x
}

fn model_bytes(model: &EmotionModel) -> Result<Vec<u8>, TrainError> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| TrainError::Checkpoint {
            path: PathBuf::from("(in memory)"),
            detail: e.to_string(),
        })?;
    Ok(bytes.to_vec())
}

fn write_log(run_dir: &Path, logs: &[EpochLog]) -> Result<(), TrainError> {
    let mut text = Vec::new();
    for log in logs {
        serde_json::to_writer(&mut text, log).expect("a log line serialises");
        text.write_all(b"\n").expect("writing to memory");
    }
    let path = run_dir.join(LOG_FILE);
    persist::write_atomic(&path, &text).map_err(|source| TrainError::Write { path, source })
}

/// One file holding the run state, the weights, the optimizer state and the
/// best weights so far, with a checksum; written by rename, so a kill
/// leaves the previous checkpoint whole.
struct Checkpoint {
    state: RunState,
    model: Vec<u8>,
    optimizer: Vec<u8>,
    best: Option<Vec<u8>>,
}

const CHECKPOINT_MAGIC: &[u8; 8] = b"EMOCKPT1";

impl Checkpoint {
    fn write(
        path: &Path,
        state: &RunState,
        model: &EmotionModel,
        optimizer: &burn::optim::ModuleOptimizer,
        best: Option<&[u8]>,
    ) -> Result<(), TrainError> {
        let optimizer_bytes = optimizer.to_record().into_bytes().map_err(|e| TrainError::Checkpoint {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        let parts: [&[u8]; 4] = [
            &serde_json::to_vec(state).expect("the run state serialises"),
            &model_bytes(model)?,
            &optimizer_bytes,
            best.unwrap_or(&[]),
        ];
        let mut bytes = CHECKPOINT_MAGIC.to_vec();
        for part in parts {
            bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
            bytes.extend_from_slice(part);
        }
        let checksum = blake3::hash(&bytes);
        bytes.extend_from_slice(checksum.as_bytes());
        persist::write_atomic(path, &bytes).map_err(|source| TrainError::Write {
            path: path.to_owned(),
            source,
        })
    }

    fn read(path: &Path) -> Result<Checkpoint, TrainError> {
        let bytes = std::fs::read(path).map_err(|source| TrainError::Read {
            path: path.to_owned(),
            source,
        })?;
        let bad = |detail: &str| TrainError::Checkpoint {
            path: path.to_owned(),
            detail: detail.to_owned(),
        };
        let (body, checksum) = bytes
            .split_at_checked(bytes.len().saturating_sub(32))
            .ok_or_else(|| bad("too short"))?;
        if !body.starts_with(CHECKPOINT_MAGIC) || blake3::hash(body).as_bytes() != checksum {
            return Err(bad("checksum mismatch"));
        }
        let mut rest = &body[CHECKPOINT_MAGIC.len()..];
        let mut parts = Vec::new();
        for _ in 0..4 {
            let (len, tail) = rest.split_at_checked(8).ok_or_else(|| bad("truncated"))?;
            let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
            let (part, tail) = tail.split_at_checked(len).ok_or_else(|| bad("truncated"))?;
            parts.push(part.to_vec());
            rest = tail;
        }
        let best = parts.pop().filter(|b| !b.is_empty());
        let optimizer = parts.pop().expect("four parts");
        let model = parts.pop().expect("four parts");
        let state = serde_json::from_slice(&parts.pop().expect("four parts")).map_err(|e| bad(&e.to_string()))?;
        Ok(Checkpoint {
            state,
            model,
            optimizer,
            best,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device::flex()
    }

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_scalar::<f32>()
    }

    #[test]
    fn soft_targets_are_tempered_distributions() {
        let rows = [vec![0.7f32, 0.2, 0.1], vec![0.25, 0.25, 0.5]];
        let at_one: Vec<f32> = soft_targets(rows.iter(), 1.0, &device())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for (a, b) in at_one.iter().zip(rows.iter().flatten()) {
            assert!((a - b).abs() < 1e-6);
        }
        let hot: Vec<f32> = soft_targets(rows.iter(), 4.0, &device())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for row in hot.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        // A higher temperature flattens: the top class loses mass.
        assert!(hot[0] < 0.7 && hot[0] > 1.0 / 3.0);
    }

    #[test]
    fn distillation_loss_spans_labels_to_teacher() {
        let logits = Tensor::<2>::from_data(
            TensorData::new(vec![2.0f32, -1.0, 0.5, 0.0, 1.0, -0.5], [2, 3]),
            &device(),
        );
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device());
        let weights = [1.0f32, 1.0, 1.0];
        let hard = scalar(cross_entropy(logits.clone(), labels.clone(), &weights, &device()));
        let loss = |targets: Vec<f32>, weight: f64, temperature: f64| {
            let distillation = Distillation {
                teacher: String::new(),
                weight,
                temperature,
            };
            let targets = Tensor::<2>::from_data(TensorData::new(targets, [2, 3]), &device());
            scalar(distillation_loss(
                logits.clone(),
                labels.clone(),
                targets,
                &weights,
                &distillation,
                &device(),
            ))
        };
        let teacher = vec![0.2f32, 0.3, 0.5, 0.6, 0.3, 0.1];
        assert!(
            (loss(teacher.clone(), 0.0, 2.0) - hard).abs() < 1e-6,
            "weight 0 is the labels' loss"
        );
        // A one-hot teacher agreeing with the labels, at T = 1, is the labels' loss again.
        let one_hot = vec![1.0f32, 0.0, 0.0, 0.0, 0.0, 1.0];
        assert!((loss(one_hot, 1.0, 1.0) - hard).abs() < 1e-5);
        // Otherwise the teacher moves it.
        assert!((loss(teacher, 0.5, 1.0) - hard).abs() > 1e-3);
    }
}
