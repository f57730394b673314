//! Experiments end to end, as `emofuse train` and `emofuse cv` run them:
//! corpora → split (test fold, validation speakers) → examples → training →
//! model directory → scores on the test fold, all written to one folder; and
//! cross-validation, one such run per fold, with a summary over the folds.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use burn::tensor::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::audio::Waveform;
use crate::augment::{AugmentError, WaveAugment};
use crate::data::Clip;
use crate::data::corpus::{ClipAudio, LoadedCorpus, label_list};
use crate::data::folds::{self, FoldError, FoldOptions, Protocol, TestFold, ValidationSplit};
use crate::eval::{self, FoldSummary, Metrics, Reliability, argmax_rows};
use crate::features::cache::FeatureCache;
use crate::features::{FeatureConfig, FeatureStats, FrameFeatures};
use crate::infer::{self, Predictor};
use crate::model::fusion::{EmotionModel, EmotionModelConfig, ModelKind};
use crate::model::input::{self, Example, ExampleBuilder, HiddenStates, TemporalSource};
use crate::model::saved::{
    self, CrossValidation, EmbeddingMeans, ModelConfig, ModelDirError, ModelFolder, Provenance, SplitFile,
};
use crate::model::temporal::{BackboneConfig, BackboneError, FrozenBackbone, TemporalConfig, TemporalPooling};
use crate::model::wav2vec2::{self, Wav2Vec2};
use crate::noise::NoiseBank;
use crate::persist;
use crate::train::{self, Distillation, Event, TrainRun, TrainingConfig, TrainingData, late_fusion};

/// Which clips train, validate and test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// `"emobox fold 3"`, `"folds.json fold 2"`, or `"all clips"`.
    pub name: String,
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    pub test: Vec<usize>,
    pub validation_description: String,
}

/// How many clips each side has.
impl std::fmt::Display for Split {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (train, validation, test) = (self.train.len(), self.validation.len(), self.test.len());
        write!(out, "{train} train, {validation} validation, {test} test clips")
    }
}

impl Split {
    /// The split of `corpus` with `test_fold` as its test set (every clip
    /// trains without one), and a validation share of its training speakers.
    pub fn of(
        corpus: &LoadedCorpus,
        test_fold: Option<&TestFold>,
        validation: f64,
        seed: u64,
    ) -> Result<Split, FoldError> {
        let (name, train, test) = match test_fold {
            Some(fold) => {
                let (train, test) = fold.split(&corpus.clips)?;
                (fold.name(), train, test)
            }
            None => ("all clips".to_owned(), (0..corpus.clips.len()).collect(), Vec::new()),
        };
        Ok(Split::new(name, corpus, train, test, validation, seed))
    }

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

    /// The split as `split.json` records it: file paths.
    fn file(&self, corpus: &LoadedCorpus) -> SplitFile {
        let paths = |indices: &[usize]| indices.iter().map(|&i| corpus.clips[i].path.clone()).collect();
        SplitFile {
            name: self.name.clone(),
            test: paths(&self.test),
            train: paths(&self.train),
            validation: self.validation_description.clone(),
            validation_clips: paths(&self.validation),
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
    /// A model to distil from.
    pub teacher: Option<Teacher>,
    /// Earlier cross-validations of this recipe, recorded in the model's provenance.
    pub cross_validation: Vec<CrossValidation>,
}

/// The teacher of knowledge distillation: one model, or a `cv` folder whose
/// fold-K model teaches fold K.
#[derive(Debug, Clone)]
pub struct Teacher {
    pub folder: ModelFolder,
    /// Share of the loss that follows the teacher (the rest follows the labels).
    pub weight: f64,
    pub temperature: f64,
}

impl ExperimentConfig {
    /// The training configuration of fold `fold` (`None`: a run without a
    /// numbered fold): the teacher, if any, is that fold's.
    fn training_for(&self, fold: Option<usize>) -> Result<TrainingConfig, ExperimentError> {
        let mut training = self.training.clone();
        if let Some(teacher) = &self.teacher {
            let dir = teacher.folder.for_fold(fold)?;
            let dir = dir.canonicalize().map_err(|e| ExperimentError::Teacher {
                dir: dir.clone(),
                problem: e.to_string(),
            })?;
            training.distillation = Some(Distillation {
                teacher: dir.display().to_string(),
                weight: teacher.weight,
                temperature: teacher.temperature,
            });
        }
        Ok(training)
    }
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
    /// The softmax temperature fitted on the validation speakers (none
    /// without validation speakers: the model's confidence is then its raw softmax).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// How well the test clips' confidences match their accuracy, before and after the temperature.
    #[serde(default)]
    pub test_reliability: Option<TestReliability>,
    pub best_epoch: usize,
    pub best_validation_ua: Option<f64>,
    pub train_seconds: f64,
}

/// Reliability bins of a fold's test clips at the raw softmax and at the
/// fitted temperature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestReliability {
    pub uncalibrated: Reliability,
    pub calibrated: Reliability,
}

/// `emobox fold 1: test UA 50.00, WA 50.00, macro-F1 50.00`.
impl std::fmt::Display for FoldResult {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.test {
            Some(test) => write!(out, "{}: test {test}", self.split),
            None => write!(out, "{}: trained (no test clips)", self.split),
        }
    }
}

pub const RESULT_FILE: &str = "results.json";

#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error(transparent)]
    Train(#[from] train::TrainError),
    #[error(transparent)]
    ModelDir(#[from] ModelDirError),
    #[error(transparent)]
    Infer(#[from] infer::InferError),
    #[error("the pretrained encoder: {0}")]
    Backbone(#[from] wav2vec2::LoadError),
    #[error("the pretrained encoder: {0}")]
    Frozen(#[from] BackboneError),
    #[error(transparent)]
    Write(#[from] persist::WriteError),
    #[error(transparent)]
    Cache(#[from] crate::features::cache::CacheError),
    #[error("{}: {source}", path.display())]
    Hash { path: PathBuf, source: std::io::Error },
    #[error("the noise corpus: {0}")]
    Noise(#[from] crate::noise::NoiseError),
    #[error(transparent)]
    Folds(#[from] FoldError),
    #[error("teacher {}: {problem}", dir.display())]
    Teacher { dir: PathBuf, problem: String },
    #[error(
        "a late fusion (--model fusion-concat --temporal-pooling mean) chooses its spectral weight on validation speakers apart from the training ones, and {split} has none: give --validation a share above 0, with at least two training speakers"
    )]
    NoValidationSpeakers { split: String },
    #[error("interrupted: the checkpoint is saved")]
    Interrupted,
    #[error("{}: not a cv summary.json: {problem}", path.display())]
    CvSummary { path: PathBuf, problem: String },
}

/// One split trained and tested, in its own folder.
pub struct SplitRun<'a> {
    /// The run's folder: model, checkpoint, log, split.json and results.json.
    pub out_dir: &'a Path,
    pub corpus: &'a LoadedCorpus,
    pub split: &'a Split,
    pub config: &'a ExperimentConfig,
    /// The fold's number, which picks a cv teacher's model (`None`: no numbered fold).
    pub fold: Option<usize>,
    pub resume: bool,
    pub device: &'a Device,
}

impl SplitRun<'_> {
    /// Trains on `split.train`, selects on `split.validation`, saves the
    /// model in `out_dir` and scores it on `split.test`.
    pub fn run(&self, stop: &AtomicBool, on_event: &mut dyn FnMut(Event)) -> Result<FoldResult, ExperimentError> {
        let mut training = self.config.training_for(self.fold)?;
        let plan = Plan::new(self, &training);
        training.model.n_classes = plan.labels.len();
        // A late fusion's weight is chosen on the validation speakers, their
        // noisy copies included: they keep their audio to make those.
        let late_fusion =
            training.model.kind == ModelKind::FusionConcat && training.model.temporal.pooling == TemporalPooling::Mean;
        let mut train = plan.examples(&self.split.train, plan.keep_audio);
        let mut validation = plan.examples(&self.split.validation, plan.keep_audio && late_fusion);
        let clean_train = train.examples.len();
        let mut wave_augment = plan.wave_augment(&training)?;
        self.split.file(self.corpus).write(self.out_dir)?;

        let encoders = Encoders::load(
            &training.model.temporal.backbone,
            training.model.kind.has_temporal(),
            self.device,
        )?;
        let teacher = training
            .distillation
            .as_ref()
            .map(|d| load_teacher(Path::new(&d.teacher), self.split, &plan.labels, self.device))
            .transpose()?;
        // Noise reaches a frozen encoder and a teacher only through fixed noisy
        // copies of each training clip, made once (seeded by clip and copy):
        // their hidden states are cached, and the teacher labels what the student hears.
        if (encoders.frozen.is_some() || teacher.is_some())
            && let Some(augment) = wave_augment.as_ref().filter(|a| a.noise.is_some())
        {
            add_noisy_copies(&mut train, augment, training.seed, on_event)?;
            if late_fusion {
                add_noisy_copies(&mut validation, augment, training.seed, on_event)?;
            }
        }
        // A frozen encoder gives the same hidden states every epoch:
        // computed once, and kept on disk for the next run and fold.
        let caches = match &encoders.frozen {
            Some(_) => Some(HiddenCaches::open(&self.config.cache_dir, &training.model.temporal)?),
            None => None,
        };
        if let (Some(frozen), Some(caches)) = (&encoders.frozen, &caches) {
            attach_hidden_states(&mut train, frozen, caches, self.device, on_event)?;
            attach_hidden_states(&mut validation, frozen, caches, self.device, on_event)?;
        }
        let teacher_probabilities = match &teacher {
            Some(teacher) => {
                // Noise mixed in later would change a clip after the teacher heard it.
                if let Some(augment) = &mut wave_augment {
                    augment.noise = None;
                }
                Some(teacher_probabilities(
                    teacher,
                    &mut train,
                    &plan.labels,
                    &self.config.cache_dir,
                    on_event,
                )?)
            }
            None => None,
        };
        let fit_probe = |examples: &[Example], clips: &[&Clip], on_event: &mut dyn FnMut(Event)| {
            let speakers: Vec<&str> = clips.iter().map(|clip| clip.speaker.as_deref().unwrap_or("")).collect();
            let paths: Vec<_> = clips.iter().map(|clip| clip.path.to_string_lossy()).collect();
            let sources: Vec<&str> = paths.iter().map(AsRef::as_ref).collect();
            let mut temporal = training.clone();
            temporal.model.kind = ModelKind::Temporal;
            train::fit_probe(
                self.out_dir,
                &temporal,
                examples,
                train::probe::Origins {
                    speakers: &speakers,
                    sources: &sources,
                },
                encoders.frozen.as_ref(),
                self.device,
                on_event,
            )
        };
        // Held-out probabilities to calibrate on, when not the validation
        // speakers' through the final model: a probe's out-of-fold ones, a
        // late fusion's validation mix.
        let (outcome, held_out) = if late_fusion {
            let (outcome, mix) = self.late_fusion(
                &training,
                LateFusionData {
                    train: &train,
                    validation: &validation,
                    clean_train,
                    teacher: teacher_probabilities.as_deref(),
                },
                &fit_probe,
                wave_augment.as_ref(),
                stop,
                on_event,
            )?;
            (outcome, mix)
        } else if training.model.temporal.pooling == TemporalPooling::Mean {
            // A probe is fitted on pooled embeddings; calibrated, without
            // validation speakers, on its inner folds' out-of-fold predictions.
            let (outcome, probe) = fit_probe(&train.examples, &train.clips, on_event)?;
            let held_out = if validation.examples.is_empty() {
                let truth = train.examples.iter().map(|e| e.label).collect();
                probe.out_of_fold.map(|probabilities| (probabilities, truth))
            } else {
                None
            };
            (outcome, held_out)
        } else {
            let outcome = TrainRun {
                run_dir: self.out_dir,
                config: &training,
                data: TrainingData {
                    train: &train.examples,
                    validation: &validation.examples,
                    n_classes: plan.labels.len(),
                    teacher: teacher_probabilities.as_deref(),
                },
                frozen: encoders.frozen.as_ref(),
                encoder: encoders.pretrained,
                wave_augment: wave_augment.as_ref(),
                resume: self.resume,
                device: self.device,
            }
            .run(stop, on_event)?;
            (outcome, None)
        };
        if outcome.interrupted {
            return Err(ExperimentError::Interrupted);
        }
        let means = embedding_means(
            &outcome.model,
            &training.model,
            &train.examples,
            encoders.frozen.as_ref(),
            self.device,
        );
        let n_classes = plan.labels.len();
        let run_model = |examples: &[Example]| {
            let probabilities = infer::probabilities(
                &outcome.model,
                &training.model,
                examples,
                encoders.frozen.as_ref(),
                self.device,
            );
            let truth: Vec<usize> = examples.iter().map(|e| e.label).collect();
            (probabilities, truth)
        };
        // Confidence is calibrated on the validation speakers, never on the test ones.
        let calibration = match held_out {
            Some(held_out) => Some(held_out),
            None if !validation.examples.is_empty() => Some(run_model(&validation.examples)),
            None => None,
        };
        let temperature =
            calibration.map(|(probabilities, truth)| eval::fit_temperature(&probabilities, &truth, n_classes));
        if temperature.is_none() {
            on_event(Event::Warning(
                "no validation clips to calibrate on: the model's confidence is its raw softmax (temperature 1)".into(),
            ));
        }
        let model_config = self.model_config(&training, &plan, &outcome, means, temperature.unwrap_or(1.0))?;
        saved::save(self.out_dir, &model_config, &outcome.model, self.config.half)?;

        let mut test = plan.examples(&self.split.test, false);
        if let (Some(frozen), Some(caches)) = (&encoders.frozen, &caches) {
            attach_hidden_states(&mut test, frozen, caches, self.device, on_event)?;
        }
        let (mut scores, mut reliability) = (None, None);
        if !test.examples.is_empty() {
            let (probabilities, truth) = run_model(&test.examples);
            let calibrated = infer::with_temperature(&probabilities, n_classes, model_config.temperature);
            scores = Some(Metrics::compute(
                &truth,
                &argmax_rows(&calibrated, n_classes),
                n_classes,
            ));
            reliability = Some(TestReliability {
                uncalibrated: Reliability::of(&probabilities, &truth, n_classes),
                calibrated: Reliability::of(&calibrated, &truth, n_classes),
            });
        }
        let result = FoldResult {
            split: self.split.name.clone(),
            model_dir: self.out_dir.to_owned(),
            unscored_test_clips: self.split.test.len() - test.examples.len(),
            labels: plan.labels,
            test: scores,
            temperature,
            test_reliability: reliability,
            best_epoch: outcome.best_epoch,
            best_validation_ua: outcome.best_validation_ua,
            train_seconds: model_config.training.as_ref().map_or(0.0, |p| p.seconds),
        };
        write_json(&self.out_dir.join(RESULT_FILE), &result)?;
        Ok(result)
    }

    /// A linear probe on every training speaker, fused late with a spectral
    /// stream trained on the clean training clips (noise, if any, mixed in
    /// as it trains) for the set number of epochs. The spectral weight is
    /// chosen on the validation clips and their noisy copies, which neither
    /// stream was fitted on: the probe's predictions there are out of fold
    /// (its inner models did not hear those speakers), and the spectral
    /// stream is not early-stopped on them — picking its best epoch there
    /// would make it look better there than anywhere else, and overweight it.
    /// Returns the fused model and its validation probabilities at that
    /// weight, with their labels.
    fn late_fusion(
        &self,
        training: &TrainingConfig,
        data: LateFusionData,
        fit_probe: &FitProbe,
        wave_augment: Option<&WaveAugment>,
        stop: &AtomicBool,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<(train::Outcome, Option<HeldOut>), ExperimentError> {
        let no_validation = || ExperimentError::NoValidationSpeakers {
            split: self.split.name.clone(),
        };
        let examples: Vec<Example> = data
            .train
            .examples
            .iter()
            .chain(&data.validation.examples)
            .cloned()
            .collect();
        let clips: Vec<&Clip> = data.train.clips.iter().chain(&data.validation.clips).copied().collect();
        // With one speaker, the validation clips are that speaker's own.
        let several_speakers = clips.iter().any(|clip| clip.speaker != clips[0].speaker);
        if data.validation.examples.is_empty() || !several_speakers {
            return Err(no_validation());
        }
        let (temporal, probe) = fit_probe(&examples, &clips, on_event)?;
        let out_of_fold = probe.out_of_fold.ok_or_else(no_validation)?;

        let mut spectral_config = training.clone();
        spectral_config.model.kind = ModelKind::Spectral;
        let spectral = TrainRun {
            run_dir: self.out_dir,
            config: &spectral_config,
            data: TrainingData {
                train: &data.train.examples[..data.clean_train],
                validation: &[],
                n_classes: training.model.n_classes,
                teacher: data.teacher.map(|teacher| &teacher[..data.clean_train]),
            },
            frozen: None,
            encoder: None,
            wave_augment,
            resume: self.resume,
            device: self.device,
        }
        .run(stop, on_event)?;
        if spectral.interrupted {
            return Ok((spectral, None));
        }

        let k = training.model.n_classes;
        let temporal_probabilities = &out_of_fold[data.train.examples.len() * k..];
        let spectral_probabilities = infer::probabilities(
            &spectral.model,
            &spectral_config.model,
            &data.validation.examples,
            None,
            self.device,
        );
        let truth: Vec<usize> = data.validation.examples.iter().map(|e| e.label).collect();
        let report = late_fusion::choose_spectral_weight(temporal_probabilities, &spectral_probabilities, &truth, k);
        write_json(&self.out_dir.join(late_fusion::REPORT_FILE), &report)?;
        on_event(Event::LateFusion(report.clone()));
        let fused_ua = report
            .grid
            .iter()
            .find(|score| score.spectral_weight == report.spectral_weight)
            .map(|score| score.ua);
        let mix = late_fusion::mix(
            temporal_probabilities,
            &spectral_probabilities,
            report.spectral_weight,
            k,
        );
        let outcome = train::Outcome {
            model: EmotionModel::late_fusion(spectral.model, temporal.model, report.spectral_weight),
            logs: spectral.logs,
            best_epoch: spectral.best_epoch,
            best_validation_ua: fused_ua,
            seconds: spectral.seconds + temporal.seconds,
            interrupted: false,
        };
        Ok((outcome, Some((mix, truth))))
    }

    /// The saved model's `config.json`: what it is and how it was made.
    fn model_config(
        &self,
        training: &TrainingConfig,
        plan: &Plan,
        outcome: &train::Outcome,
        embedding_means: EmbeddingMeans,
        temperature: f32,
    ) -> Result<ModelConfig, ExperimentError> {
        let mut model = training.model.clone();
        model.temporal.backbone = model.temporal.backbone.portable()?;
        Ok(ModelConfig {
            format: saved::FORMAT.into(),
            model,
            features: self.corpus.features.clone(),
            feature_stats: plan.feature_stats.clone(),
            labels: plan.labels.clone(),
            temperature,
            embedding_means,
            training: Some(Provenance {
                command: self.config.command.clone(),
                data: self.corpus.sources.clone(),
                fold: Some(self.split.name.clone()),
                seed: training.seed,
                version: env!("CARGO_PKG_VERSION").into(),
                commit: option_env!("EMOFUSE_COMMIT").unwrap_or("unknown").into(),
                train_clips: self.split.train.len(),
                validation_clips: self.split.validation.len(),
                validation: self.split.validation_description.clone(),
                epochs_run: outcome.logs.len(),
                best_epoch: outcome.best_epoch,
                best_validation_ua: outcome.best_validation_ua,
                seconds: outcome.seconds,
                cross_validation: self.config.cross_validation.clone(),
            }),
        })
    }
}

/// Probabilities `[clips][classes]` of clips a model was not fitted on, and their labels.
type HeldOut = (Vec<f32>, Vec<usize>);

/// Fits a linear probe on examples and the clips they came from.
type FitProbe<'f> = dyn Fn(&[Example], &[&Clip], &mut dyn FnMut(Event)) -> Result<(train::Outcome, train::probe::Probe), train::TrainError>
    + 'f;

/// A late fusion's examples: each set's clean clips first, their noisy copies after.
struct LateFusionData<'s, 'a> {
    train: &'s ExampleSet<'a>,
    validation: &'s ExampleSet<'a>,
    clean_train: usize,
    /// The teacher's probabilities of the training examples, if distilling.
    teacher: Option<&'s [Vec<f32>]>,
}

/// What a split's training needs before it starts: the labels and the
/// feature statistics of its training clips, and the builder of its examples.
struct Plan<'a> {
    corpus: &'a LoadedCorpus,
    labels: Vec<String>,
    feature_stats: Option<FeatureStats>,
    builder: ExampleBuilder,
    /// Training clips keep their audio: it is changed, or a teacher hears it.
    keep_audio: bool,
}

/// Examples of some clips of the corpus, with the clips they came from.
struct ExampleSet<'a> {
    clips: Vec<&'a Clip>,
    examples: Vec<Example>,
    /// Content hashes of the clips' files (`keys[i]` is `examples[i]`'s cache
    /// key), filled in where hidden states or noisy copies need them.
    keys: Vec<blake3::Hash>,
}

impl<'a> Plan<'a> {
    fn new(run: &SplitRun<'a>, training: &TrainingConfig) -> Plan<'a> {
        let corpus = run.corpus;
        let train_clips = run.split.train.iter().map(|&i| &corpus.clips[i]);
        let labels = label_list(train_clips.map(|c| c.label.as_str()));
        let feature_stats = FeatureStats::fit(run.split.train.iter().map(|&i| &corpus.audio[i].features));
        Plan {
            corpus,
            labels,
            builder: example_builder(&training.model, &corpus.features, &feature_stats),
            feature_stats,
            keep_audio: training.augment.changes_audio() || training.distillation.is_some(),
        }
    }

    /// The examples of the clips at `indices` whose label the training set
    /// has (the others cannot be scored: see `unscored_test_clips`).
    fn examples(&self, indices: &[usize], keep_audio: bool) -> ExampleSet<'a> {
        let known: Vec<usize> = indices
            .iter()
            .copied()
            .filter(|&i| self.labels.contains(&self.corpus.clips[i].label))
            .collect();
        let clips: Vec<&Clip> = known.iter().map(|&i| &self.corpus.clips[i]).collect();
        let examples = known
            .iter()
            .map(|&i| self.example(&self.corpus.clips[i], &self.corpus.audio[i], keep_audio))
            .collect();
        ExampleSet {
            clips,
            examples,
            keys: Vec::new(),
        }
    }

    fn example(&self, clip: &Clip, audio: &ClipAudio, keep_audio: bool) -> Example {
        let label = self
            .labels
            .iter()
            .position(|l| *l == clip.label)
            .expect("only clips with a training label get examples");
        let mut example = self
            .builder
            .from_features(audio.features.clone(), &audio.samples, label);
        example.audio = keep_audio.then(|| audio.samples.clone());
        example
    }

    /// The waveform augmentation of `training`, when clips keep their audio.
    fn wave_augment(&self, training: &TrainingConfig) -> Result<Option<WaveAugment>, ExperimentError> {
        if !self.keep_audio {
            return Ok(None);
        }
        let noise = match &training.augment.noise {
            Some(config) => Some((NoiseBank::load(&config.dir)?.train_pool(training.seed)?, config.clone())),
            None => None,
        };
        Ok(Some(WaveAugment {
            speeds: training.augment.speeds.clone(),
            noise,
            builder: example_builder(&training.model, &self.corpus.features, &self.feature_stats),
        }))
    }
}

/// The builder of a model's examples from its frame features.
fn example_builder(
    model: &EmotionModelConfig,
    features: &FeatureConfig,
    stats: &Option<FeatureStats>,
) -> ExampleBuilder {
    ExampleBuilder::new(model, features, stats.clone()).expect("the training feature configuration is valid")
}

/// The pretrained encoders of a backbone: one to fine-tune inside the
/// model, or one frozen outside it.
struct Encoders {
    pretrained: Option<Wav2Vec2>,
    frozen: Option<FrozenBackbone>,
}

impl Encoders {
    fn load(backbone: &BackboneConfig, has_temporal: bool, device: &Device) -> Result<Encoders, ExperimentError> {
        let pretrained = match (backbone, has_temporal) {
            (
                BackboneConfig::Wav2vec2 {
                    path, finetune: true, ..
                },
                true,
            ) => Some(wav2vec2::load(path, &device.clone().autodiff())?.0),
            _ => None,
        };
        let frozen = (has_temporal && !backbone.is_trained())
            .then(|| FrozenBackbone::load(backbone, device))
            .transpose()?;
        Ok(Encoders { pretrained, frozen })
    }
}

/// The teacher model in `dir`, checked to know every label and, when the
/// split has test clips, to have been trained on this same split (a teacher
/// that heard the test speakers would leak them into the student).
fn load_teacher(dir: &Path, split: &Split, labels: &[String], device: &Device) -> Result<Predictor, ExperimentError> {
    let problem = |problem: String| ExperimentError::Teacher {
        dir: dir.to_owned(),
        problem,
    };
    let teacher = Predictor::load(dir, device)?;
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

/// The teacher's probabilities of each example (from its audio), in the order
/// of `labels`. A teacher on a frozen encoder reads the hidden states cached
/// under `cache_dir` (its own training's, for a clip it heard there) and
/// caches those it computes: labelling then costs no encoder pass.
fn teacher_probabilities(
    teacher: &Predictor,
    set: &mut ExampleSet,
    labels: &[String],
    cache_dir: &Path,
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
    let caches = match teacher.frozen() {
        Some(_) => {
            let mut temporal = teacher.config().model.temporal.clone();
            temporal.backbone = temporal.backbone.local()?;
            set.hash_files()?;
            Some(HiddenCaches::open(cache_dir, &temporal)?)
        }
        None => None,
    };
    let n_classes = teacher.labels().len();
    let total = set.examples.len();
    let mut rows = Vec::with_capacity(total);
    // In chunks, so that only one chunk's audio is held twice.
    for start in (0..total).step_by(256) {
        let end = (start + 256).min(total);
        let examples = (start..end)
            .map(|i| {
                let samples = set.examples[i]
                    .audio
                    .as_ref()
                    .expect("a teacher's examples keep their audio")
                    .to_vec();
                teacher.example(
                    &Waveform {
                        samples,
                        sample_rate: crate::audio::SAMPLE_RATE,
                    },
                    &set.clips[i].path.display().to_string(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut part = ExampleSet {
            clips: set.clips[start..end].to_vec(),
            examples,
            keys: set.keys.get(start..end).map(<[_]>::to_vec).unwrap_or_default(),
        };
        if let (Some(frozen), Some(caches)) = (teacher.frozen(), &caches) {
            attach_hidden_states(&mut part, frozen, caches, teacher.device(), &mut |_| {})?;
        }
        for row in teacher.probabilities(&part.examples).chunks_exact(n_classes) {
            rows.push(columns.iter().map(|&j| row[j]).collect());
        }
        on_event(Event::Teacher { done: end, total });
    }
    Ok(rows)
}

/// Mean pooled embedding of each stream over `examples` (SHAP's baseline).
fn embedding_means(
    model: &EmotionModel,
    config: &EmotionModelConfig,
    examples: &[Example],
    frozen: Option<&FrozenBackbone>,
    device: &Device,
) -> EmbeddingMeans {
    let mut sums: [Option<Vec<f64>>; 2] = [None, None];
    for chunk in examples.chunks(16) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let output = model.forward(input::model_input(config, &refs, frozen, device));
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

/// Noisy copies of a frozen encoder's training clips made per clean clip.
const NOISY_COPIES: u64 = 2;

/// A noisy copy of a training example and its cache key.
type NoisyCopy = (Example, blake3::Hash);

impl ExampleSet<'_> {
    /// Fills in [`Self::keys`]: the content hash of each clip's file.
    fn hash_files(&mut self) -> Result<(), ExperimentError> {
        if !self.keys.is_empty() {
            return Ok(());
        }
        self.keys = self
            .clips
            .iter()
            .map(|clip| {
                FeatureCache::content_hash(&clip.path).map_err(|source| ExperimentError::Hash {
                    path: clip.path.clone(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }
}

/// Adds [`NOISY_COPIES`] noise-mixed copies of every training example, keyed
/// by clip content, copy, seed and the noise settings and pool. A copy that
/// cannot be made is left out, and the count said.
fn add_noisy_copies(
    set: &mut ExampleSet,
    augment: &WaveAugment,
    seed: u64,
    on_event: &mut dyn FnMut(Event),
) -> Result<(), ExperimentError> {
    let (bank, noise) = augment.noise.as_ref().expect("a noise corpus");
    let mut setting = blake3::Hasher::new();
    setting.update(format!("{:?} {:?} {:?}", noise.dir, noise.snr_db, noise.reference).as_bytes());
    for clip in &bank.clips {
        setting.update(clip.path.to_string_lossy().as_bytes());
    }
    let setting = setting.finalize();
    set.hash_files()?;
    let keys = set.keys.clone();
    let made: Vec<(usize, Result<NoisyCopy, AugmentError>)> = (1..=NOISY_COPIES)
        .flat_map(|copy| {
            set.examples
                .iter()
                .zip(&keys)
                .enumerate()
                .map(move |(i, (example, key))| (copy, i, example, key))
        })
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|(copy, i, example, key)| {
            let mut id = blake3::Hasher::new();
            id.update(key.as_bytes());
            id.update(setting.as_bytes());
            id.update(&copy.to_le_bytes());
            id.update(&seed.to_le_bytes());
            let id = id.finalize();
            let mut rng = ChaCha8Rng::from_seed(*id.as_bytes());
            (i, augment.noisy_copy(example, &mut rng).map(|e| (e, id)))
        })
        .collect();
    let mut failed = 0;
    for (clean, copy) in made {
        match copy {
            Ok((example, key)) => {
                set.examples.push(example);
                set.keys.push(key);
                set.clips.push(set.clips[clean]);
            }
            Err(_) => failed += 1,
        }
    }
    if failed > 0 {
        on_event(Event::Warning(format!(
            "{failed} noisy copies of training clips could not be made (noise mixing failed); they are left out"
        )));
    }
    Ok(())
}

/// Where a frozen encoder's hidden states are kept between runs.
struct HiddenCaches {
    /// Every frame of every layer.
    frames: FeatureCache,
    /// Each layer's mean over frames, for models that pool by means: when
    /// set, examples get these (one frame, the same pooled embedding) and
    /// `frames` is read, never written.
    means: Option<FeatureCache>,
}

impl HiddenCaches {
    /// The caches under `cache_dir` of a temporal stream's frozen encoder.
    fn open(cache_dir: &Path, temporal: &TemporalConfig) -> Result<HiddenCaches, ExperimentError> {
        let identity = temporal.backbone.identity();
        Ok(HiddenCaches {
            frames: FeatureCache::open_keyed(cache_dir.join("hidden"), &identity)?,
            // A probe reads only each layer's mean over frames: 1/frames of the storage.
            means: (temporal.pooling == TemporalPooling::Mean)
                .then(|| FeatureCache::open_keyed(cache_dir.join("hidden-means"), &identity))
                .transpose()?,
        })
    }

    /// A clip's stored states, in the form examples get them.
    fn get(&self, key: &blake3::Hash, layers: usize) -> Result<Option<HiddenStates>, ExperimentError> {
        let Some(means) = &self.means else {
            return Ok(self.frames.get(key).map(|matrix| from_matrix(matrix, layers)));
        };
        if let Some(matrix) = means.get(key) {
            return Ok(Some(from_matrix(matrix, layers)));
        }
        match self.frames.get(key) {
            Some(matrix) => self.put(key, from_matrix(matrix, layers)).map(Some),
            None => Ok(None),
        }
    }

    /// Stores a clip's states; returns them in the form examples get them.
    fn put(&self, key: &blake3::Hash, states: HiddenStates) -> Result<HiddenStates, ExperimentError> {
        let (cache, states) = match &self.means {
            Some(means) => (means, frame_means(&states)),
            None => (&self.frames, states),
        };
        cache.put(key, &to_matrix(&states))?;
        Ok(states)
    }
}

/// Each layer's mean over the frames, as states of one frame.
fn frame_means(states: &HiddenStates) -> HiddenStates {
    let (frames, hidden) = (states.frames.max(1), states.hidden);
    let data = states
        .data
        .chunks_exact(states.frames * hidden)
        .flat_map(|layer| {
            (0..hidden)
                .map(move |j| layer.iter().skip(j).step_by(hidden).map(|&v| f64::from(v)).sum::<f64>() / frames as f64)
        })
        .map(|v| v as f32)
        .collect();
    HiddenStates {
        layers: states.layers,
        frames: 1,
        hidden,
        data,
    }
}

/// Gives every example its frozen encoder's hidden states, from the caches
/// (keyed by [`ExampleSet::keys`]), computing (in batches of clips of
/// similar length) and storing the missing ones.
fn attach_hidden_states(
    set: &mut ExampleSet,
    frozen: &FrozenBackbone,
    caches: &HiddenCaches,
    device: &Device,
    on_event: &mut dyn FnMut(Event),
) -> Result<(), ExperimentError> {
    set.hash_files()?;
    let layers = frozen.n_layers();
    let mut missing = Vec::new();
    for (i, key) in set.keys.iter().enumerate() {
        match caches.get(key, layers)? {
            Some(states) => set.examples[i].temporal = Some(TemporalSource::Hidden(states.into())),
            None => missing.push(i),
        }
    }
    let samples_of = |example: &Example| {
        let source = example
            .temporal
            .as_ref()
            .expect("a frozen encoder's examples have a temporal stream");
        source.samples().clone()
    };
    missing.sort_by_key(|&i| samples_of(&set.examples[i]).len());
    let total = missing.len();
    for (done, batch) in missing.chunks(8).enumerate() {
        let samples: Vec<std::sync::Arc<Vec<f32>>> = batch.iter().map(|&i| samples_of(&set.examples[i])).collect();
        let clips: Vec<&[f32]> = samples.iter().map(|s| s.as_slice()).collect();
        let (states, n_frames) = frozen.hidden_states(&clips, device);
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
            let states = caches.put(&set.keys[i], states)?;
            set.examples[i].temporal = Some(TemporalSource::Hidden(states.into()));
        }
        on_event(Event::HiddenStates {
            done: ((done + 1) * 8).min(total),
            total,
        });
    }
    Ok(())
}

/// Hidden states as a cache entry: rows `layers · hidden`, one column per frame
/// (the values keep their `[layers, frames, hidden]` order).
fn to_matrix(states: &HiddenStates) -> FrameFeatures {
    FrameFeatures {
        n_features: states.layers * states.hidden,
        n_frames: states.frames,
        data: states.data.clone(),
    }
}

fn from_matrix(matrix: FrameFeatures, layers: usize) -> HiddenStates {
    HiddenStates {
        layers,
        frames: matrix.n_frames,
        hidden: matrix.n_features / layers,
        data: matrix.data,
    }
}

/// Every fold of a cross-validation, and the mean ± std over them.
#[derive(Debug, Clone, Serialize)]
pub struct CvSummary {
    pub protocol: &'static str,
    pub model: &'static str,
    pub data: Vec<String>,
    pub summary: FoldSummary,
    /// Expected calibration error of all folds' test clips pooled (15 bins).
    pub ece: Option<PooledEce>,
    pub folds: Vec<FoldResult>,
    pub seconds: f64,
}

/// ECE of the pooled test clips at the raw softmax and at each fold's fitted temperature.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PooledEce {
    pub uncalibrated: f64,
    pub calibrated: f64,
}

impl PooledEce {
    fn of(folds: &[FoldResult]) -> Option<PooledEce> {
        let mut pooled: Option<(Reliability, Reliability)> = None;
        for fold in folds {
            let Some(test) = &fold.test_reliability else { continue };
            let (raw, calibrated) = pooled.get_or_insert_with(|| (Reliability::empty(), Reliability::empty()));
            raw.add(&test.uncalibrated);
            calibrated.add(&test.calibrated);
        }
        pooled.map(|(raw, calibrated)| PooledEce {
            uncalibrated: raw.ece(),
            calibrated: calibrated.ece(),
        })
    }
}

/// What the caller is told while a cross-validation runs.
pub enum CvEvent<'a> {
    /// Fold `fold` finished in an earlier run (its results are kept).
    DoneEarlier { fold: usize, result: &'a FoldResult },
    /// Fold `fold` of `of` starts training.
    FoldStarted { fold: usize, of: usize, split: &'a Split },
    /// An event of the current fold's training.
    Training(Event),
    /// The fold started last finished (or failed: the error follows from `cross_validate`).
    FoldFinished { result: Option<&'a FoldResult> },
}

/// Settings of a cross-validation beyond the experiment's.
pub struct CvPlan<'a> {
    /// One sub-folder per fold (`fold-K`), and `summary.json` / `summary.csv`.
    pub out_dir: &'a Path,
    pub folds: FoldOptions,
    /// Folds to run (from 1); empty: all.
    pub only: &'a [usize],
    /// Share of each fold's training speakers held out for validation.
    pub validation: f64,
    pub resume: bool,
}

/// Trains and tests every fold. A fold finished earlier (its `results.json`
/// exists) is not trained again and a fold with a checkpoint resumes, so a
/// killed cross-validation, run again, continues where it stopped.
pub fn cross_validate(
    plan: &CvPlan,
    corpus: &LoadedCorpus,
    config: &ExperimentConfig,
    device: &Device,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(CvEvent),
) -> Result<CvSummary, ExperimentError> {
    let folds = corpus.folds(&plan.folds)?;
    let chosen: Vec<usize> = if plan.only.is_empty() {
        (1..=folds.len()).collect()
    } else {
        plan.only.to_vec()
    };
    let mut results = Vec::new();
    for k in chosen {
        let fold = folds.get(k.wrapping_sub(1)).ok_or(FoldError::NoSuchFold {
            fold: k,
            count: folds.len(),
        })?;
        let dir = plan.out_dir.join(format!("fold-{k}"));
        if let Some(done) = read_result(&dir) {
            on_event(CvEvent::DoneEarlier { fold: k, result: &done });
            results.push(done);
            continue;
        }
        let mut name = format!("{} fold {k}", plan.folds.protocol.as_str());
        if plan.folds.protocol == Protocol::LeaveOneCorpusOut {
            name += &format!(" ({})", corpus.clips[fold.test[0]].corpus_name());
        }
        let seed = config.training.seed;
        let split = Split::new(
            name,
            corpus,
            fold.train.clone(),
            fold.test.clone(),
            plan.validation,
            seed,
        );
        on_event(CvEvent::FoldStarted {
            fold: k,
            of: folds.len(),
            split: &split,
        });
        std::fs::create_dir_all(&dir).map_err(|source| persist::WriteError {
            path: dir.clone(),
            source,
        })?;
        let run = SplitRun {
            out_dir: &dir,
            corpus,
            split: &split,
            config,
            fold: Some(k),
            resume: plan.resume || dir.join(train::CHECKPOINT_FILE).is_file(),
            device,
        };
        let result = run.run(stop, &mut |event| on_event(CvEvent::Training(event)));
        on_event(CvEvent::FoldFinished {
            result: result.as_ref().ok(),
        });
        results.push(result?);
    }
    let scored: Vec<Metrics> = results.iter().filter_map(|r| r.test.clone()).collect();
    let summary = CvSummary {
        protocol: plan.folds.protocol.as_str(),
        model: config.training.model.kind.as_str(),
        data: corpus.sources.clone(),
        summary: FoldSummary::of(&scored),
        ece: PooledEce::of(&results),
        seconds: results.iter().map(|r| r.train_seconds).sum(),
        folds: results,
    };
    write_json(&plan.out_dir.join("summary.json"), &summary)?;
    persist::write_file(&plan.out_dir.join("summary.csv"), summary.csv().as_bytes())?;
    Ok(summary)
}

/// The parts of a `summary.json` a model's provenance keeps.
#[derive(Deserialize)]
struct SavedCvSummary {
    protocol: String,
    model: String,
    data: Vec<String>,
    summary: FoldSummary,
    ece: Option<PooledEce>,
}

/// The cross-validation in `path` (a `cv` run's `summary.json`), to be
/// recorded with a model of kind `model` trained by the same recipe; one of
/// another kind of model is refused.
pub fn read_cross_validation(path: &Path, model: ModelKind) -> Result<CrossValidation, ExperimentError> {
    let problem = |problem: String| ExperimentError::CvSummary {
        path: path.to_owned(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|e| problem(e.to_string()))?;
    let saved: SavedCvSummary = serde_json::from_slice(&bytes).map_err(|e| problem(e.to_string()))?;
    if saved.model != model.as_str() {
        return Err(problem(format!(
            "it cross-validated a {} model, this one is {}",
            saved.model,
            model.as_str()
        )));
    }
    Ok(CrossValidation {
        protocol: saved.protocol,
        corpora: saved.data.iter().map(|source| saved::without_folder(source)).collect(),
        folds: saved.summary.folds,
        ua_mean: saved.summary.ua.mean,
        ua_std: saved.summary.ua.std,
        ece: saved.ece.map(|ece| ece.calibrated),
    })
}

/// One line: the model, the data and each score's mean ± std over folds.
impl std::fmt::Display for CvSummary {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.summary;
        write!(
            out,
            "{} on {} ({} folds): UA {:.2} ± {:.2}, WA {:.2} ± {:.2}, macro-F1 {:.2} ± {:.2}",
            self.model,
            self.data.join(" + "),
            s.folds,
            100.0 * s.ua.mean,
            100.0 * s.ua.std,
            100.0 * s.wa.mean,
            100.0 * s.wa.std,
            100.0 * s.macro_f1.mean,
            100.0 * s.macro_f1.std
        )?;
        if let Some(ece) = self.ece {
            write!(out, "; ECE {:.3} (raw softmax {:.3})", ece.calibrated, ece.uncalibrated)?;
        }
        Ok(())
    }
}

impl CvSummary {
    /// `summary.csv`: a row per scored fold (its ECE at the fitted and the raw
    /// softmax, the temperature, the split), then the mean (ECE pooled over
    /// the folds' test clips) and std rows.
    pub fn csv(&self) -> String {
        let mut csv = String::from("fold,ua,wa,macro_f1,best_epoch,train_seconds,ece,ece_raw,temperature,split\n");
        for (i, fold) in self.folds.iter().enumerate() {
            if let Some(test) = &fold.test {
                let (ece, ece_raw) = fold
                    .test_reliability
                    .as_ref()
                    .map_or((String::new(), String::new()), |r| {
                        (
                            format!("{:.4}", r.calibrated.ece()),
                            format!("{:.4}", r.uncalibrated.ece()),
                        )
                    });
                csv += &format!(
                    "{},{:.4},{:.4},{:.4},{},{:.1},{ece},{ece_raw},{},\"{}\"\n",
                    i + 1,
                    test.ua,
                    test.wa,
                    test.macro_f1,
                    fold.best_epoch,
                    fold.train_seconds,
                    fold.temperature.map_or(String::new(), |t| format!("{t:.3}")),
                    fold.split.replace('"', "\"\"")
                );
            }
        }
        let s = &self.summary;
        let (ece, ece_raw) = self.ece.map_or((String::new(), String::new()), |e| {
            (format!("{:.4}", e.calibrated), format!("{:.4}", e.uncalibrated))
        });
        csv += &format!(
            "mean,{:.4},{:.4},{:.4},,,{ece},{ece_raw},,pooled ECE\n",
            s.ua.mean, s.wa.mean, s.macro_f1.mean
        );
        csv += &format!("std,{:.4},{:.4},{:.4},,,,,,\n", s.ua.std, s.wa.std, s.macro_f1.std);
        csv
    }
}

fn read_result(dir: &Path) -> Option<FoldResult> {
    let bytes = std::fs::read(dir.join(RESULT_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), ExperimentError> {
    let json = serde_json::to_vec_pretty(value).expect("results serialise");
    Ok(persist::write_file(path, &json)?)
}
