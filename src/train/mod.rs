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

mod checkpoint;
mod config;
pub mod late_fusion;
mod loss;
pub mod probe;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::module::Param;
use burn::optim::GradientsParams;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::augment::WaveAugment;
use crate::eval::{Metrics, argmax_rows};
use crate::model::fusion::EmotionModel;
use crate::model::input::{self, Example};
use crate::model::temporal::{FrozenBackbone, TemporalPooling};
use crate::model::wav2vec2::Wav2Vec2;
use crate::persist;
use checkpoint::{Checkpoint, RunState};

pub use checkpoint::{CHECKPOINT_FILE, LOG_FILE};
pub use config::{Balance, Distillation, Schedule, ScheduleName, TrainingConfig};

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
    /// Clips whose audio could not be changed this epoch (they were used unchanged).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub augment_failures: usize,
}

/// The epoch's line of a training log for people.
impl std::fmt::Display for EpochLog {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(out, "epoch {:>3}: train loss {:.4}", self.epoch, self.train_loss)?;
        if let Some(ua) = self.validation_ua {
            write!(out, ", validation UA {:.2}", 100.0 * ua)?;
        }
        if self.best {
            write!(out, " *")?;
        }
        if self.augment_failures > 0 {
            write!(
                out,
                " ({} clips could not be augmented and were used unchanged)",
                self.augment_failures
            )?;
        }
        Ok(())
    }
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
    /// The linear probe's strength was chosen (a [`TemporalPooling::Mean`] model).
    Probe(probe::ProbeReport),
    /// A late fusion's spectral weight was chosen on the validation clips.
    LateFusion(late_fusion::LateFusionReport),
    /// Something the user should know that does not stop the run.
    Warning(String),
}

/// How a run ended.
pub struct Outcome {
    /// The weights of the best epoch (the last one without validation).
    pub model: EmotionModel,
    pub logs: Vec<EpochLog>,
    pub best_epoch: usize,
    pub best_validation_ua: Option<f64>,
    /// Time spent training (all sessions of a resumed run).
    pub seconds: f64,
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
    #[error("{}: the checkpoint was made with other training settings", path.display())]
    ConfigChanged { path: PathBuf },
    #[error("no training examples")]
    NoData,
    #[error("cannot fit the linear probe: {0}")]
    Probe(#[from] probe::FitError),
}

/// One training run: what is trained, on which examples, where its files go.
pub struct TrainRun<'a> {
    /// The run directory (created if needed): checkpoint and epoch log.
    pub run_dir: &'a Path,
    pub config: &'a TrainingConfig,
    pub data: TrainingData<'a>,
    /// Computes the temporal stream's hidden states when its encoder is not trained.
    pub frozen: Option<&'a FrozenBackbone>,
    /// A pretrained encoder to fine-tune (the stream starts from it).
    pub encoder: Option<Wav2Vec2>,
    /// Changes training clips' audio: the waveform part of `config.augment`.
    pub wave_augment: Option<&'a WaveAugment>,
    /// Continue from the run directory's checkpoint, if there is one.
    pub resume: bool,
    /// Where the model trains (gradients are added on top of it).
    pub device: &'a Device,
}

/// The model and optimizer of a run in progress, with where it stands.
struct Progress {
    model: EmotionModel,
    optimizer: burn::optim::ModuleOptimizer,
    state: RunState,
    /// The best epoch's weights so far.
    best: Option<Vec<u8>>,
}

impl Progress {
    /// Checkpoints where the run stands.
    fn save(&self, path: &Path) -> Result<(), TrainError> {
        Checkpoint::write(path, &self.state, &self.model, &self.optimizer, self.best.as_deref())
    }
}

impl TrainRun<'_> {
    /// Trains to the end, to early stopping, or until `stop` is set (polled
    /// after every batch; the position is then checkpointed and the outcome
    /// says `interrupted`).
    pub fn run(self, stop: &AtomicBool, on_event: &mut dyn FnMut(Event)) -> Result<Outcome, TrainError> {
        if self.data.train.is_empty() {
            return Err(TrainError::NoData);
        }
        let checkpoint_path = self.run_dir.join(CHECKPOINT_FILE);
        let batches_per_epoch = self.data.train.len().div_ceil(self.config.batch_size);
        let class_weights = loss::class_weights(self.data.train, self.data.n_classes, self.config.balance);
        let mut progress = self.start(&checkpoint_path)?;
        checkpoint::write_log(self.run_dir, &progress.state.logs)?;
        let state = &progress.state;
        on_event(Event::Started {
            epochs: self.config.epochs,
            batches_per_epoch,
            resumed_at: (state.epoch > 0 || state.batch > 0).then_some((state.epoch, state.batch)),
        });
        let mut interrupted = false;
        while progress.state.epoch < self.config.epochs && !should_stop_early(self.config, &progress.state) {
            let started = Instant::now();
            interrupted = self.train_epoch(&mut progress, &class_weights, stop, on_event);
            progress.state.seconds += started.elapsed().as_secs_f64();
            if interrupted {
                progress.save(&checkpoint_path)?;
                break;
            }
            let log = self.finish_epoch(&mut progress, &class_weights)?;
            progress.save(&checkpoint_path)?;
            checkpoint::write_log(self.run_dir, &progress.state.logs)?;
            on_event(Event::Epoch(log));
        }
        let Progress { model, state, best, .. } = progress;
        let model = match &best {
            Some(bytes) if !interrupted => load_weights(model, bytes.clone(), &checkpoint_path)?,
            _ => model,
        };
        Ok(Outcome {
            model: model.valid(),
            seconds: state.logs.iter().map(|log| log.seconds).sum(),
            logs: state.logs,
            best_epoch: state.best_epoch,
            best_validation_ua: state.best_ua,
            interrupted,
        })
    }

    /// A new model, or the checkpointed one when resuming.
    fn start(&self, checkpoint_path: &Path) -> Result<Progress, TrainError> {
        let device = self.device.clone().autodiff();
        device.seed(self.config.seed);
        let mut progress = Progress {
            model: self.config.model.init(self.encoder.clone(), &device),
            optimizer: self.config.optimizer(),
            state: RunState::new(self.config),
            best: None,
        };
        persist::remove_stale_temporaries(self.run_dir);
        if self.resume && checkpoint_path.is_file() {
            let checkpoint = Checkpoint::read(checkpoint_path)?;
            if checkpoint.state.config.canonical() != self.config.canonical() {
                return Err(TrainError::ConfigChanged {
                    path: checkpoint_path.to_owned(),
                });
            }
            let bad = |detail: String| TrainError::Checkpoint {
                path: checkpoint_path.to_owned(),
                detail,
            };
            progress.model = load_weights(progress.model, checkpoint.model, checkpoint_path)?;
            let record = burn::optim::OptimizerRecord::from_bytes(Bytes::from_bytes_vec(checkpoint.optimizer))
                .map_err(|e| bad(e.to_string()))?;
            progress.optimizer = progress.optimizer.load_record(record);
            progress.best = checkpoint.best;
            progress.state = checkpoint.state;
        }
        Ok(progress)
    }

    /// The rest of the current epoch's batches; `true` when `stop` cut it short.
    fn train_epoch(
        &self,
        progress: &mut Progress,
        class_weights: &[f32],
        stop: &AtomicBool,
        on_event: &mut dyn FnMut(Event),
    ) -> bool {
        let (config, data) = (self.config, &self.data);
        let device = self.device.clone().autodiff();
        let batches_per_epoch = data.train.len().div_ceil(config.batch_size);
        let order = epoch_order(data, config, progress.state.epoch);
        for (b, batch) in order.chunks(config.batch_size).enumerate().skip(progress.state.batch) {
            if stop.load(Ordering::Relaxed) {
                return true;
            }
            let state = &mut progress.state;
            device.seed(mix(config.seed, state.epoch as u64, b as u64));
            let (augmented, failures): (Vec<Example>, Vec<bool>) = batch
                .par_iter()
                .enumerate()
                .map(|(k, &i)| {
                    let draw = mix(config.seed, (state.epoch * batches_per_epoch + b) as u64, k as u64);
                    let (example, failure) =
                        config
                            .augment
                            .apply(&data.train[i], self.wave_augment, &mut ChaCha8Rng::seed_from_u64(draw));
                    (example, failure.is_some())
                })
                .unzip();
            state.augment_failures += failures.iter().filter(|&&failed| failed).count();
            let examples: Vec<&Example> = augmented.iter().collect();
            let input = input::model_input(&config.model, &examples, self.frozen, &device);
            let labels = input::labels(&examples, &device);
            let logits = progress.model.forward(input).logits;
            let loss = match (&config.distillation, data.teacher) {
                (Some(distillation), Some(teacher)) => {
                    let targets =
                        loss::soft_targets(batch.iter().map(|&i| &teacher[i]), distillation.temperature, &device);
                    loss::distillation_loss(logits, labels, targets, class_weights, distillation, &device)
                }
                _ => loss::cross_entropy(logits, labels, class_weights, &device),
            };
            let loss_value = f64::from(loss.clone().into_scalar::<f32>());
            let gradients = GradientsParams::from_grads(loss.backward(), &progress.model);
            let lr = config.learning_rate_at(state.step, state.lr_scale, batches_per_epoch);
            progress.model = progress.optimizer.step(lr, progress.model.clone(), gradients);
            state.step += 1;
            state.batch = b + 1;
            state.loss_sum += loss_value;
            on_event(Event::Batch {
                epoch: state.epoch,
                batch: b,
                loss: loss_value,
            });
        }
        false
    }

    /// Validation, the best weights so far and the schedule after a whole
    /// epoch; the epoch's log line.
    fn finish_epoch(&self, progress: &mut Progress, class_weights: &[f32]) -> Result<EpochLog, TrainError> {
        let (config, data) = (self.config, &self.data);
        let batches_per_epoch = data.train.len().div_ceil(config.batch_size);
        let validation = (!data.validation.is_empty()).then(|| {
            let model = progress.model.valid();
            validate(&model, config, data.validation, self.frozen, self.device, class_weights)
        });
        let state = &mut progress.state;
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
            progress.best = Some(checkpoint::model_bytes(&progress.model)?);
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
            learning_rate: config.learning_rate_at(state.step, state.lr_scale, batches_per_epoch),
            validation_loss: validation.as_ref().map(|(_, loss)| *loss),
            validation_ua: ua,
            validation_wa: validation.as_ref().map(|(metrics, _)| metrics.wa),
            seconds: state.seconds,
            best: improved,
            augment_failures: state.augment_failures,
        };
        state.logs.push(log.clone());
        state.epoch += 1;
        state.batch = 0;
        state.loss_sum = 0.0;
        state.seconds = 0.0;
        state.augment_failures = 0;
        Ok(log)
    }
}

/// A [`TemporalPooling::Mean`] model, fitted rather than trained: its
/// temporal stream pools each training clip once, and the standardisation
/// and linear classifier are a [`probe`] fitted on those embeddings
/// (`origins` says who spoke each example and which recording it was made
/// from, for the inner folds). Writes
/// `probe.json` (how `C` was chosen) in `run_dir`.
pub fn fit_probe(
    run_dir: &Path,
    config: &TrainingConfig,
    train: &[Example],
    origins: probe::Origins,
    frozen: Option<&FrozenBackbone>,
    device: &Device,
    on_event: &mut dyn FnMut(Event),
) -> Result<(Outcome, probe::Probe), TrainError> {
    assert_eq!(
        config.model.temporal.pooling,
        TemporalPooling::Mean,
        "a probe pools by means"
    );
    assert_eq!(config.model.classifier_hidden, 0, "a probe's classifier is linear");
    if train.is_empty() {
        return Err(TrainError::NoData);
    }
    let started = Instant::now();
    let mut model = config.model.init(None, device);
    let width = config.model.temporal.embedding_width();
    let mut x = Vec::with_capacity(train.len() * width);
    for batch in train.chunks(config.batch_size.max(1)) {
        let examples: Vec<&Example> = batch.iter().collect();
        let output = model.forward(input::model_input(&config.model, &examples, frozen, device));
        let embedding = output.temporal.expect("a probe has a temporal stream").embedding;
        x.extend(embedding.into_data().convert::<f32>().iter::<f32>());
    }
    let labels: Vec<usize> = train.iter().map(|e| e.label).collect();
    let data = probe::ProbeData {
        x: &x,
        width,
        labels: &labels,
        origins,
        n_classes: config.model.n_classes,
    };
    let fitted = probe::fit(&data, device)?;
    on_event(Event::Probe(fitted.report.clone()));
    persist::write_atomic(
        &run_dir.join(probe::REPORT_FILE),
        &serde_json::to_vec_pretty(&fitted.report).expect("a report serialises"),
    )
    .map_err(|source| TrainError::Write {
        path: run_dir.join(probe::REPORT_FILE),
        source,
    })?;
    let stream = model.temporal.as_mut().expect("a probe has a temporal stream");
    let standardization = stream.standardization.as_mut().expect("mean pooling standardises");
    let vector = |values: &[f32]| Tensor::<1>::from_data(TensorData::new(values.to_vec(), [values.len()]), device);
    standardization.mean = Param::from_tensor(vector(&fitted.mean));
    standardization.scale = Param::from_tensor(vector(&fitted.scale));
    let k = config.model.n_classes;
    let output = &mut model.classifier.output;
    output.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(fitted.weight.clone(), [width, k]),
        device,
    ));
    output.bias = Some(Param::from_tensor(vector(&fitted.bias)));
    // Fitted in one go: no epochs.
    let outcome = Outcome {
        model,
        logs: Vec::new(),
        best_epoch: 0,
        best_validation_ua: None,
        seconds: started.elapsed().as_secs_f64(),
        interrupted: false,
    };
    Ok((outcome, fitted))
}

/// `model` with the weights of a checkpoint's record bytes.
fn load_weights(model: EmotionModel, bytes: Vec<u8>, checkpoint_path: &Path) -> Result<EmotionModel, TrainError> {
    let bad = |detail: String| TrainError::Checkpoint {
        path: checkpoint_path.to_owned(),
        detail,
    };
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| bad(e.to_string()))?;
    model.try_load_record(record).map_err(|e| bad(e.to_string()))
}

/// Metrics and mean (class-weighted) loss of a validation-mode model on `examples`.
fn validate(
    model: &EmotionModel,
    config: &TrainingConfig,
    examples: &[Example],
    frozen: Option<&FrozenBackbone>,
    device: &Device,
    class_weights: &[f32],
) -> (Metrics, f64) {
    let n_classes = config.model.n_classes;
    let probabilities = crate::infer::probabilities(model, &config.model, examples, frozen, device);
    let truth: Vec<usize> = examples.iter().map(|e| e.label).collect();
    let predicted = argmax_rows(&probabilities, n_classes);
    let (mut loss, mut weight) = (0.0, 0.0);
    for (row, &label) in probabilities.chunks_exact(n_classes).zip(&truth) {
        let w = f64::from(class_weights[label]);
        loss -= w * f64::from(row[label].max(1e-12)).ln();
        weight += w;
    }
    (
        Metrics::compute(&truth, &predicted, n_classes),
        loss / weight.max(1e-12),
    )
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn should_stop_early(config: &TrainingConfig, state: &RunState) -> bool {
    config
        .patience
        .is_some_and(|patience| state.epochs_since_best >= patience)
        && state.batch == 0
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
        run.sort_by_key(|&i| data.train[i].features.n_frames);
    }
    let mut batches: Vec<Vec<usize>> = order.chunks(config.batch_size).map(<[usize]>::to_vec).collect();
    batches.shuffle(&mut rng);
    batches.concat()
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
