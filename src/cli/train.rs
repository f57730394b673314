//! `emofuse train` (one model, optionally scored on a test fold) and
//! `emofuse cv` (every fold of a protocol, mean ± std).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use emofuse::augment::{Augment, NoiseAugmentConfig};
use emofuse::data::DatasetKind;
use emofuse::data::corpus::LoadedCorpus;
use emofuse::data::folds::{FoldOptions, ProtocolName, TestFold};
use emofuse::experiment::{self, CvEvent, CvPlan, ExperimentConfig, Split, SplitRun, Teacher};
use emofuse::features::FeatureConfig;
use emofuse::model::fusion::{EmotionModelConfig, ModelKind};
use emofuse::model::saved::ModelFolder;
use emofuse::model::temporal::{BackboneConfig, LayerCombination, TemporalPooling};
use emofuse::model::whisper::WhisperMode;
use emofuse::noise::SnrReference;
use emofuse::train::{Balance, Event, ScheduleName, TrainingConfig};

use super::{DeviceArg, FoldArgs, cache_root, print_json, progress_bar, report_problems};

/// The data and model options `train` and `cv` share.
#[derive(Debug, Args)]
pub struct TrainOptions {
    /// Corpus folders or manifests; several are pooled (their labels united).
    #[arg(long, required = true)]
    data: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = DatasetKind::Auto)]
    dataset: DatasetKind,
    /// Which streams and fusion.
    #[arg(long, value_enum, default_value_t = ModelKind::FusionGated)]
    model: ModelKind,
    /// Temporal encoder: `scratch` (small wav2vec 2.0 trained with the model),
    /// `whisper-base` (fetched by scripts/get-whisper-base.sh; frozen), or a
    /// folder: Hugging Face wav2vec 2.0 / HuBERT (frozen unless --finetune) or
    /// Whisper (frozen).
    #[arg(long, default_value = "scratch")]
    backbone: String,
    /// How the temporal stream combines the encoder's layers per frame.
    #[arg(long, value_enum, default_value_t = LayerCombination::Mix)]
    temporal_layers: LayerCombination,
    /// How the temporal stream pools its frames.
    #[arg(long, value_enum, default_value_t = TemporalPooling::Attentive)]
    temporal_pooling: TemporalPooling,
    /// How much audio a Whisper backbone sees: the clip alone, or padded to 30 s as in pre-training.
    #[arg(long, value_enum, default_value_t = WhisperMode::Trimmed)]
    whisper_mode: WhisperMode,
    /// Train the pretrained encoder too (it is then saved in the model).
    #[arg(long)]
    finetune: bool,
    #[arg(long, default_value_t = 40)]
    epochs: usize,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 1e-2)]
    weight_decay: f32,
    /// Linear learning-rate warm-up, in epochs.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    #[arg(long, value_enum, default_value_t = ScheduleName::Cosine)]
    schedule: ScheduleName,
    #[arg(long, value_enum, default_value_t = Balance::ClassWeights)]
    balance: Balance,
    /// Clip each parameter's gradient to this norm (0 = off).
    #[arg(long, default_value_t = 1.0)]
    clip_grad: f32,
    /// Stop after this many epochs without a better validation UA (0 = never).
    #[arg(long, default_value_t = 10)]
    patience: usize,
    /// Share of the training speakers held out for validation and early stopping (0 = none).
    #[arg(long, default_value_t = 0.15)]
    validation: f64,
    /// Speed perturbation: factors drawn per clip and epoch (1 = unchanged).
    #[arg(long, value_delimiter = ',', default_value = "0.9,1.0,1.1")]
    speed: Vec<f64>,
    /// Mix real noise into training clips: a noise corpus (class folders,
    /// UrbanSound8K or ESC-50); only its train pool is used.
    #[arg(long)]
    noise_dir: Option<PathBuf>,
    /// SNR range of the training noise, in dB (`low:high`).
    #[arg(long, default_value = "0:20", value_parser = parse_range, allow_hyphen_values = true)]
    snr_range: (f64, f64),
    /// Share of training clips that get noise.
    #[arg(long, default_value_t = 0.5)]
    noise_prob: f64,
    /// SpecAugment: time masks per clip (each up to 10 % of it) on the frame features.
    #[arg(long, default_value_t = 2)]
    time_masks: usize,
    /// SpecAugment: masks of up to 6 consecutive feature rows per clip.
    #[arg(long, default_value_t = 1)]
    feature_masks: usize,
    /// Width of both streams' embeddings.
    #[arg(long, default_value_t = 128)]
    width: usize,
    /// Dropout of the classifier and the temporal stream.
    #[arg(long, default_value_t = 0.3)]
    dropout: f64,
    /// Bring every clip's active speech to this level (dBFS) before the frame
    /// features, so that the recording level does not matter; `off` keeps
    /// the level as recorded.
    #[arg(long, default_value = "-26")]
    level_dbfs: LevelArg,
    /// Dropout inside the spectral CNN's blocks.
    #[arg(long, default_value_t = 0.2)]
    spectral_dropout: f64,
    /// Distil from a teacher model: a model folder, or a `cv` output folder whose
    /// fold-K model teaches fold K. Teachers label every training clip (and,
    /// with --noise-dir, two fixed noisy copies of it, which are then the only
    /// noise the student hears); a teacher must not have been trained on the test fold.
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// Share of the loss that follows the teacher (the rest follows the labels).
    #[arg(long, default_value_t = 0.5, requires = "teacher")]
    teacher_weight: f64,
    /// Softmax temperature of distillation.
    #[arg(long, default_value_t = 2.0, requires = "teacher")]
    teacher_temperature: f64,
    /// Seed of splits, initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Permit EmoBox's TESS, CREMA-D and EmoDB folds, in which every speaker is in
    /// both train and test (results are then speaker-dependent).
    #[arg(long)]
    allow_speaker_overlap: bool,
    /// Store weights as f16 (half the size).
    #[arg(long)]
    half: bool,
    /// Continue a run that was interrupted (its checkpoint is in the output folder).
    #[arg(long)]
    resume: bool,
    /// Cache folder for features and frozen encoders' hidden states
    /// [default: $EMOFUSE_CACHE or ~/.cache/emofuse].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    options: TrainOptions,
    /// Output folder: the model (config.json, model.safetensors), its log, checkpoint and scores.
    #[arg(long)]
    out: PathBuf,
    /// Without a test fold every clip trains.
    #[command(flatten)]
    fold: FoldArgs,
    /// A `cv` run's summary.json of the same recipe (repeatable): its
    /// cross-validated UA is recorded in the model (shown by `serve`'s page).
    #[arg(long)]
    cv_summary: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CvArgs {
    #[command(flatten)]
    options: TrainOptions,
    /// Output folder: one sub-folder per fold, and summary.json / summary.csv.
    #[arg(long)]
    out: PathBuf,
    /// Folds [default: EmoBox's; EmoDB: speaker-pairs]. leave-one-corpus-out
    /// tests on each --data corpus in turn (calm counted as neutral, labels
    /// without a counterpart, such as boredom, left out).
    #[arg(long, value_enum)]
    protocol: Option<ProtocolName>,
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// Run only these folds (from 1; default all).
    #[arg(long, value_delimiter = ',')]
    folds: Vec<usize>,
}

pub fn train(args: &TrainArgs) -> Result<ExitCode> {
    let options = &args.options;
    let device = options.device.open()?;
    let test_fold = args.fold.test_fold(options.seed, options.allow_speaker_overlap)?;
    let mut config = experiment_config(options)?;
    for summary in &args.cv_summary {
        config
            .cross_validation
            .push(experiment::read_cross_validation(summary, options.model)?);
    }
    let stop = stop_flag()?;
    let cross_corpus = test_fold.as_ref().is_some_and(TestFold::is_cross_corpus);
    let corpus = load_corpora(options, cross_corpus)?;
    let split = Split::of(&corpus, test_fold.as_ref(), options.validation, options.seed)
        .context("cannot make the test fold")?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let run = SplitRun {
        out_dir: &args.out,
        corpus: &corpus,
        split: &split,
        config: &config,
        fold: test_fold.map(|fold| fold.fold),
        resume: options.resume,
        device: &device,
    };
    let mut progress = TrainingProgress::default();
    let result = run.run(&stop, &mut |event| progress.show(event));
    progress.finish();
    let result = result?;
    eprintln!("{result}");
    print_json(&result)?;
    Ok(report_problems(&corpus.problems))
}

pub fn cv(args: &CvArgs) -> Result<ExitCode> {
    let options = &args.options;
    let device = options.device.open()?;
    let config = experiment_config(options)?;
    let stop = stop_flag()?;
    let corpus = load_corpora(options, args.protocol == Some(ProtocolName::LeaveOneCorpusOut))?;
    let plan = CvPlan {
        out_dir: &args.out,
        folds: FoldOptions {
            protocol: corpus.protocol(args.protocol, args.k),
            seed: options.seed,
            allow_speaker_overlap: options.allow_speaker_overlap,
        },
        only: &args.folds,
        validation: options.validation,
        resume: options.resume,
    };
    let mut progress = TrainingProgress::default();
    let summary = experiment::cross_validate(&plan, &corpus, &config, &device, &stop, &mut |event| match event {
        CvEvent::DoneEarlier { fold, result } => {
            let ua = result.test.as_ref().map_or(0.0, |m| m.ua);
            eprintln!("fold {fold}: done earlier (UA {:.2})", 100.0 * ua);
        }
        CvEvent::FoldStarted { fold, of, split } => eprintln!("fold {fold}/{of}: {split}"),
        CvEvent::Training(event) => progress.show(event),
        CvEvent::FoldFinished { result } => {
            std::mem::take(&mut progress).finish();
            if let Some(result) = result {
                eprintln!("{result}");
            }
        }
    });
    progress.finish();
    println!("{}", summary?);
    Ok(report_problems(&corpus.problems))
}

/// Ctrl-C sets the flag; training checkpoints and stops at the next batch.
fn stop_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler = flag.clone();
    ctrlc::set_handler(move || {
        if handler.swap(true, Ordering::Relaxed) {
            // A second Ctrl-C means now.
            std::process::exit(130);
        }
        eprintln!("\nemofuse: stopping after this batch (the checkpoint is saved; Ctrl-C again to quit at once)");
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(flag)
}

/// The progress bars of one training run.
#[derive(Default)]
struct TrainingProgress {
    /// Work before training (hidden states, the teacher's labels), by message.
    stages: BTreeMap<&'static str, ProgressBar>,
    training: Option<ProgressBar>,
}

impl TrainingProgress {
    fn show(&mut self, event: Event) {
        let (stage, done, total) = match event {
            Event::HiddenStates { done, total } => ("encoder hidden states", done, total),
            Event::Teacher { done, total } => ("teacher's probabilities", done, total),
            Event::Started {
                epochs,
                batches_per_epoch,
                resumed_at,
            } => {
                let bar = ProgressBar::new((epochs * batches_per_epoch) as u64);
                bar.set_style(
                    ProgressStyle::with_template("{msg:50} {bar:30} {percent:>3}% [{elapsed_precise}, eta {eta}]")
                        .expect("the template is valid"),
                );
                if let Some((epoch, batch)) = resumed_at {
                    bar.set_position((epoch * batches_per_epoch + batch) as u64);
                    bar.reset_eta();
                    eprintln!("resuming after epoch {epoch}, batch {batch}");
                }
                self.training = Some(bar);
                return;
            }
            Event::Batch { epoch, loss, .. } => {
                if let Some(bar) = &self.training {
                    bar.inc(1);
                    bar.set_message(format!("epoch {} loss {loss:.3}", epoch + 1));
                }
                return;
            }
            // Printed even when the bar is hidden (stderr not a terminal), for logs.
            Event::Epoch(log) => {
                match &self.training {
                    Some(bar) => bar.suspend(|| eprintln!("{log}")),
                    None => eprintln!("{log}"),
                }
                return;
            }
            Event::Probe(report) => {
                let grid: Vec<String> = report
                    .grid
                    .iter()
                    .map(|(c, ua)| format!("{c:e} {:.2}", 100.0 * ua))
                    .collect();
                return eprintln!(
                    "linear probe: C = {:e} chosen by {} inner speaker folds (inner UA by C: {})",
                    report.c,
                    report.inner_folds,
                    grid.join(", ")
                );
            }
            Event::LateFusion(report) => {
                let grid: Vec<String> = report
                    .grid
                    .iter()
                    .map(|score| format!("{} {:.3}", score.spectral_weight, score.nll))
                    .collect();
                return eprintln!(
                    "late fusion: spectral weight {} chosen on {} validation clips (NLL by weight: {})",
                    report.spectral_weight,
                    report.clips,
                    grid.join(", ")
                );
            }
            Event::Warning(warning) => return eprintln!("warning: {warning}"),
        };
        let bar = self.stages.entry(stage).or_insert_with(|| progress_bar(0, stage));
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }

    fn finish(self) {
        for bar in self.stages.into_values().chain(self.training) {
            bar.finish_and_clear();
        }
    }
}

fn experiment_config(options: &TrainOptions) -> Result<ExperimentConfig> {
    if !(0.0..1.0).contains(&options.validation) {
        bail!("--validation is a share of the training speakers, from 0 (none) to below 1");
    }
    let backbone = BackboneConfig::from_name(&options.backbone, options.finetune, options.whisper_mode)
        .with_context(|| format!("--backbone {}", options.backbone))?;
    let mut model = EmotionModelConfig::new(
        options.model,
        backbone,
        options.width,
        options.dropout,
        options.spectral_dropout,
    );
    model.temporal.layers = options.temporal_layers;
    model.temporal.pooling = options.temporal_pooling;
    if options.temporal_pooling == TemporalPooling::Mean {
        // A linear probe: fitted on the frozen encoder's pooled states, with a
        // linear classifier; alone, or fused late with a spectral stream
        // whose classifier is linear too.
        let probe_model = matches!(options.model, ModelKind::Temporal | ModelKind::FusionConcat);
        if !probe_model || model.temporal.backbone.is_trained() {
            bail!(
                "--temporal-pooling mean fits a linear probe on a frozen encoder: it needs --model temporal (or fusion-concat, the probe fused late with the spectral stream) and a pretrained --backbone (not scratch or --finetune)"
            );
        }
        if options.model == ModelKind::FusionConcat && options.validation <= 0.0 {
            bail!(
                "--model fusion-concat --temporal-pooling mean chooses the spectral stream's weight on validation speakers: give --validation a share above 0"
            );
        }
        model.classifier_hidden = 0;
    }
    Ok(ExperimentConfig {
        training: TrainingConfig {
            model,
            epochs: options.epochs,
            batch_size: options.batch_size,
            learning_rate: options.lr,
            weight_decay: options.weight_decay,
            warmup_epochs: options.warmup,
            schedule: options.schedule.into(),
            balance: options.balance,
            grad_clip_norm: (options.clip_grad > 0.0).then_some(options.clip_grad),
            patience: (options.patience > 0 && options.validation > 0.0).then_some(options.patience),
            augment: Augment {
                speeds: options.speed.clone(),
                noise: options.noise_dir.as_ref().map(|dir| NoiseAugmentConfig {
                    dir: dir.canonicalize().unwrap_or_else(|_| dir.clone()),
                    snr_db: options.snr_range,
                    probability: options.noise_prob,
                    reference: SnrReference::WholeClip,
                }),
                time_masks: options.time_masks,
                time_mask_share: 0.1,
                feature_masks: options.feature_masks,
                feature_mask_width: 6,
            },
            seed: options.seed,
            distillation: None,
        },
        half: options.half,
        // `emofuse`, not the path it was run from: provenance names no local folder.
        command: std::iter::once("emofuse".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        cache_dir: cache_root(options.cache_dir.as_deref()),
        teacher: teacher(options)?,
        cross_validation: Vec::new(),
    })
}

/// `--teacher`: a model folder, or a `cv` folder whose fold-K model teaches fold K.
fn teacher(options: &TrainOptions) -> Result<Option<Teacher>> {
    let Some(dir) = &options.teacher else {
        return Ok(None);
    };
    if !(0.0..=1.0).contains(&options.teacher_weight) || options.teacher_temperature <= 0.0 {
        bail!("--teacher-weight is a share (0 to 1) and --teacher-temperature must be positive");
    }
    Ok(Some(Teacher {
        folder: ModelFolder::open(dir).with_context(|| format!("--teacher {}", dir.display()))?,
        weight: options.teacher_weight,
        temperature: options.teacher_temperature,
    }))
}

/// Every corpus of `--data`, decoded with features (through the cache),
/// relabelled for cross-corpus work when `cross_corpus`; the files left out
/// are listed when the command ends.
fn load_corpora(options: &TrainOptions, cross_corpus: bool) -> Result<LoadedCorpus> {
    let progress = progress_bar(0, "audio and features");
    let mut corpus = LoadedCorpus::load(
        &options.data,
        options.dataset,
        &FeatureConfig::for_training(options.level_dbfs.0),
        &cache_root(options.cache_dir.as_deref()),
        |total| {
            progress.set_length(total as u64);
            progress.inc(1);
        },
    )
    .context("cannot read the corpora")?;
    progress.finish_and_clear();
    if cross_corpus {
        eprintln!("{}", corpus.use_shared_labels());
    }
    Ok(corpus)
}

/// `--level-dbfs`: a level in dBFS, or `off`.
#[derive(Debug, Clone, Copy)]
struct LevelArg(Option<f32>);

impl std::str::FromStr for LevelArg {
    type Err = String;

    fn from_str(text: &str) -> Result<LevelArg, String> {
        if text == "off" {
            return Ok(LevelArg(None));
        }
        let level = text
            .parse::<f32>()
            .map_err(|e| format!("{text:?}: {e} (want a level in dBFS, or off)"))?;
        FeatureConfig::for_training(Some(level))
            .validate()
            .map_err(|e| e.to_string())?;
        Ok(LevelArg(Some(level)))
    }
}

/// `low:high` in dB.
fn parse_range(text: &str) -> Result<(f64, f64), String> {
    let (low, high) = text.split_once(':').ok_or("want low:high, e.g. 0:20")?;
    let parse = |v: &str| v.trim().parse::<f64>().map_err(|e| format!("{v:?}: {e}"));
    let (low, high) = (parse(low)?, parse(high)?);
    if low > high {
        return Err(format!("{low} is above {high}"));
    }
    Ok((low, high))
}
