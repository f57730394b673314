//! `emofuse train` (one model, optionally scored on a test fold) and
//! `emofuse cv` (every fold of a protocol, mean ± std).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use emofuse::data::examples;
use emofuse::data::folds::{self, FoldOptions, Protocol};
use emofuse::data::{self, Clip, DatasetKind, Problem};
use emofuse::eval::FoldSummary;
use emofuse::experiment::{self, ExperimentConfig, FoldResult, LoadedCorpus, Split};
use emofuse::features::cache::FeatureCache;
use emofuse::features::{FeatureConfig, FeatureExtractor};
use emofuse::model::fusion::{EmotionModelConfig, ModelKind};
use emofuse::model::spectral_cnn::SpectralCnnConfig;
use emofuse::model::temporal::{BackboneConfig, TemporalConfig};
use emofuse::model::wav2vec2::{self, Wav2Vec2Config};
use emofuse::model::whisper::{self, WhisperMode};
use emofuse::noise::{NoiseAugmentConfig, SnrReference};
use emofuse::persist;
use emofuse::train::{Augment, Balance, Distillation, Event, Schedule, TrainingConfig};

use super::{ProtocolName, print_json, progress_bar};

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
    /// Permit EmoBox's TESS and CREMA-D folds, in which every speaker is in
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScheduleName {
    Cosine,
    Plateau,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    options: TrainOptions,
    /// Output folder: the model (config.json, model.safetensors), its log, checkpoint and scores.
    #[arg(long)]
    out: PathBuf,
    /// Test on one fold of this protocol (numbered from 1); without it every clip trains.
    #[arg(long, value_enum, requires = "fold")]
    protocol: Option<ProtocolName>,
    /// A folds JSON (`emofuse data folds --json`) to take the test fold from.
    #[arg(long, conflicts_with = "protocol", requires = "fold")]
    fold_file: Option<PathBuf>,
    /// Which fold is the test set (from 1).
    #[arg(long)]
    fold: Option<usize>,
    /// Folds for `--protocol kfold`.
    #[arg(long, default_value_t = 5)]
    k: usize,
}

#[derive(Debug, Args)]
pub struct CvArgs {
    #[command(flatten)]
    options: TrainOptions,
    /// Output folder: one sub-folder per fold, and summary.json / summary.csv.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = ProtocolName::Emobox)]
    protocol: ProtocolName,
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// Run only these folds (from 1; default all).
    #[arg(long, value_delimiter = ',')]
    folds: Vec<usize>,
}

pub fn train(args: &TrainArgs) -> Result<ExitCode> {
    let options = &args.options;
    let stop = stop_flag()?;
    let corpus = load_corpora(options)?;
    let (name, train, test) = match (&args.protocol, &args.fold_file, args.fold) {
        (Some(protocol), _, Some(k)) => {
            let folds = make_folds(&corpus, *protocol, args.k, options)?;
            let fold = folds
                .get(k.wrapping_sub(1))
                .with_context(|| format!("--fold {k}: there are {} folds", folds.len()))?;
            (
                format!("{} fold {k}", protocol.as_str()),
                fold.train.clone(),
                fold.test.clone(),
            )
        }
        (None, Some(file), Some(k)) => {
            let (train, test) = fold_from_file(&corpus, file, k)?;
            (format!("{} fold {k}", file.display()), train, test)
        }
        _ => ("all clips".to_owned(), (0..corpus.clips.len()).collect(), Vec::new()),
    };
    let split = Split::new(name, &corpus, train, test, options.validation, options.seed);
    let config = with_teacher(experiment_config(options)?, options, args.fold)?;
    let result = run_one(&args.out, &corpus, &split, &config, options.resume, &stop)?;
    print_json(&result)?;
    Ok(super::report_problems(&corpus.problems))
}

#[derive(Serialize)]
struct CvSummary<'a> {
    protocol: &'static str,
    model: &'static str,
    data: &'a [String],
    summary: FoldSummary,
    folds: Vec<FoldResult>,
    seconds: f64,
}

pub fn cv(args: &CvArgs) -> Result<ExitCode> {
    let options = &args.options;
    let stop = stop_flag()?;
    let corpus = load_corpora(options)?;
    let folds = make_folds(&corpus, args.protocol, args.k, options)?;
    let config = experiment_config(options)?;
    let chosen: Vec<usize> = if args.folds.is_empty() {
        (1..=folds.len()).collect()
    } else {
        args.folds.clone()
    };
    let mut results = Vec::new();
    for k in chosen {
        let fold = folds
            .get(k.wrapping_sub(1))
            .with_context(|| format!("fold {k}: there are {} folds", folds.len()))?;
        let dir = args.out.join(format!("fold-{k}"));
        // A finished fold is not trained again: cv can be killed and restarted.
        if let Some(done) = read_result(&dir) {
            eprintln!(
                "fold {k}: done earlier (UA {:.2})",
                100.0 * done.test.as_ref().map_or(0.0, |m| m.ua)
            );
            results.push(done);
            continue;
        }
        let name = format!("{} fold {k}", args.protocol.as_str());
        let split = Split::new(
            name,
            &corpus,
            fold.train.clone(),
            fold.test.clone(),
            options.validation,
            options.seed,
        );
        eprintln!(
            "fold {k}/{}: {} train, {} validation, {} test clips",
            folds.len(),
            split.train.len(),
            split.validation.len(),
            split.test.len()
        );
        let resume = options.resume || dir.join(emofuse::train::CHECKPOINT_FILE).is_file();
        let config = with_teacher(config.clone(), options, Some(k))?;
        let result = run_one(&dir, &corpus, &split, &config, resume, &stop)?;
        if let Some(test) = &result.test {
            eprintln!(
                "fold {k}: UA {:.2}  WA {:.2}  macro-F1 {:.2}",
                100.0 * test.ua,
                100.0 * test.wa,
                100.0 * test.macro_f1
            );
        }
        results.push(result);
    }
    let scored: Vec<_> = results.iter().filter_map(|r| r.test.clone()).collect();
    let summary = CvSummary {
        protocol: args.protocol.as_str(),
        model: options.model.as_str(),
        data: &corpus.sources,
        summary: FoldSummary::of(&scored),
        seconds: results.iter().map(|r| r.train_seconds).sum(),
        folds: results,
    };
    let json = serde_json::to_vec_pretty(&summary).expect("a summary serialises");
    persist::write_atomic(&args.out.join("summary.json"), &json).context("cannot write summary.json")?;
    persist::write_atomic(&args.out.join("summary.csv"), summary_csv(&summary).as_bytes())
        .context("cannot write summary.csv")?;
    let s = &summary.summary;
    println!(
        "{} on {} ({} folds): UA {:.2} ± {:.2}, WA {:.2} ± {:.2}, macro-F1 {:.2} ± {:.2}",
        summary.model,
        summary.data.join(" + "),
        s.folds,
        100.0 * s.ua.mean,
        100.0 * s.ua.std,
        100.0 * s.wa.mean,
        100.0 * s.wa.std,
        100.0 * s.macro_f1.mean,
        100.0 * s.macro_f1.std
    );
    Ok(super::report_problems(&corpus.problems))
}

fn summary_csv(summary: &CvSummary) -> String {
    let mut csv = String::from("fold,ua,wa,macro_f1,best_epoch,train_seconds\n");
    for (i, fold) in summary.folds.iter().enumerate() {
        if let Some(test) = &fold.test {
            csv += &format!(
                "{},{:.4},{:.4},{:.4},{},{:.1}\n",
                i + 1,
                test.ua,
                test.wa,
                test.macro_f1,
                fold.best_epoch,
                fold.train_seconds
            );
        }
    }
    let s = &summary.summary;
    csv += &format!("mean,{:.4},{:.4},{:.4},,\n", s.ua.mean, s.wa.mean, s.macro_f1.mean);
    csv += &format!("std,{:.4},{:.4},{:.4},,\n", s.ua.std, s.wa.std, s.macro_f1.std);
    csv
}

fn read_result(dir: &Path) -> Option<FoldResult> {
    let bytes = std::fs::read(dir.join(experiment::RESULT_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
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

fn run_one(
    out: &Path,
    corpus: &LoadedCorpus,
    split: &Split,
    config: &ExperimentConfig,
    resume: bool,
    stop: &AtomicBool,
) -> Result<FoldResult> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut bar: Option<ProgressBar> = None;
    let hidden_bar = progress_bar(0, "encoder hidden states");
    let teacher_bar = progress_bar(0, "teacher's probabilities");
    let mut on_event = |event: Event| match event {
        Event::HiddenStates { done, total } => {
            hidden_bar.set_length(total as u64);
            hidden_bar.set_position(done as u64);
        }
        Event::Teacher { done, total } => {
            teacher_bar.set_length(total as u64);
            teacher_bar.set_position(done as u64);
        }
        Event::Started {
            epochs,
            batches_per_epoch,
            resumed_at,
        } => {
            let progress = ProgressBar::new((epochs * batches_per_epoch) as u64);
            progress.set_style(
                ProgressStyle::with_template("{msg:50} {bar:30} {percent:>3}% [{elapsed_precise}, eta {eta}]")
                    .expect("the template is valid"),
            );
            if let Some((epoch, batch)) = resumed_at {
                progress.set_position((epoch * batches_per_epoch + batch) as u64);
                progress.reset_eta();
                eprintln!("resuming after epoch {epoch}, batch {batch}");
            }
            bar = Some(progress);
        }
        Event::Batch { epoch, loss, .. } => {
            if let Some(bar) = &bar {
                bar.inc(1);
                bar.set_message(format!("epoch {} loss {loss:.3}", epoch + 1));
            }
        }
        Event::Epoch(log) => {
            if let Some(bar) = &bar {
                let validation = log
                    .validation_ua
                    .map_or(String::new(), |ua| format!(", validation UA {:.2}", 100.0 * ua));
                // Printed even when the bar is hidden (stderr not a terminal), for logs.
                bar.suspend(|| {
                    eprintln!(
                        "epoch {:>3}: train loss {:.4}{validation}{}",
                        log.epoch,
                        log.train_loss,
                        if log.best { " *" } else { "" }
                    )
                });
            }
        }
    };
    let result = experiment::run(out, corpus, split, config, resume, stop, &mut on_event);
    hidden_bar.finish_and_clear();
    teacher_bar.finish_and_clear();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let result = result?;
    if let Some(test) = &result.test {
        eprintln!(
            "{}: test UA {:.2}, WA {:.2}, macro-F1 {:.2}",
            result.split,
            100.0 * test.ua,
            100.0 * test.wa,
            100.0 * test.macro_f1
        );
    }
    Ok(result)
}

fn experiment_config(options: &TrainOptions) -> Result<ExperimentConfig> {
    if !(0.0..1.0).contains(&options.validation) {
        bail!("--validation is a share of the training speakers, from 0 (none) to below 1");
    }
    let backbone = resolve_backbone(options)?;
    let n_features = FeatureConfig::default().n_features();
    let model = EmotionModelConfig {
        kind: options.model,
        spectral: SpectralCnnConfig::new()
            .with_channels_in(n_features)
            .with_channels(vec![64, options.width, options.width])
            .with_dropout(options.spectral_dropout),
        temporal: TemporalConfig {
            backbone,
            d_model: options.width,
            attention_dim: 64,
            dropout: options.dropout,
        },
        classifier_hidden: options.width,
        dropout: options.dropout,
        // Set from the training labels by the experiment.
        n_classes: 0,
    };
    let schedule = match options.schedule {
        ScheduleName::Cosine => Schedule::Cosine,
        ScheduleName::Plateau => Schedule::Plateau {
            patience: 3,
            factor: 0.5,
        },
    };
    Ok(ExperimentConfig {
        training: TrainingConfig {
            model,
            epochs: options.epochs,
            batch_size: options.batch_size,
            learning_rate: options.lr,
            weight_decay: options.weight_decay,
            warmup_epochs: options.warmup,
            schedule,
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
        command: std::env::args().collect::<Vec<_>>().join(" "),
        cache_dir: cache_root(options),
    })
}

/// `--teacher` for fold `fold` (or the whole run): a model folder as given,
/// or the `fold-K` model of a `cv` folder.
fn with_teacher(mut config: ExperimentConfig, options: &TrainOptions, fold: Option<usize>) -> Result<ExperimentConfig> {
    let Some(dir) = &options.teacher else {
        return Ok(config);
    };
    let dir = match fold {
        Some(k) if !dir.join("config.json").is_file() => dir.join(format!("fold-{k}")),
        _ => dir.clone(),
    };
    if !dir.join("config.json").is_file() {
        bail!(
            "--teacher {}: not a model folder (no config.json){}",
            dir.display(),
            if fold.is_some() {
                " nor a cv folder with this fold"
            } else {
                ""
            }
        );
    }
    if !(0.0..=1.0).contains(&options.teacher_weight) || options.teacher_temperature <= 0.0 {
        bail!("--teacher-weight is a share (0 to 1) and --teacher-temperature must be positive");
    }
    let dir = dir
        .canonicalize()
        .with_context(|| format!("--teacher {}", dir.display()))?;
    config.training.distillation = Some(Distillation {
        teacher: dir.display().to_string(),
        weight: options.teacher_weight,
        temperature: options.teacher_temperature,
    });
    Ok(config)
}

/// Every corpus of `--data`, decoded with features (through the cache).
fn load_corpora(options: &TrainOptions) -> Result<LoadedCorpus> {
    let mut clips: Vec<Clip> = Vec::new();
    let mut problems: Vec<Problem> = Vec::new();
    let mut sources = Vec::new();
    for dir in &options.data {
        let dataset =
            data::load(dir, options.dataset).with_context(|| format!("cannot read the corpus {}", dir.display()))?;
        sources.push(format!(
            "{} ({}, {} clips)",
            dir.display(),
            dataset.corpus.as_str(),
            dataset.clips.len()
        ));
        clips.extend(dataset.clips);
        problems.extend(dataset.problems);
    }
    let config = FeatureConfig::default();
    let extractor = FeatureExtractor::new(config.clone())?;
    // The same layout as `emofuse prepare`: features under <cache root>/features.
    let cache = FeatureCache::open(cache_root(options).join("features"), &config)?;
    let progress = progress_bar(clips.len() as u64, "audio and features");
    let loaded = examples::load_audio(&clips, &extractor, Some(&cache), || progress.inc(1));
    progress.finish_and_clear();
    let mut kept_clips = Vec::new();
    let mut audio = Vec::new();
    for (clip, result) in clips.into_iter().zip(loaded) {
        match result {
            Ok(a) => {
                kept_clips.push(clip);
                audio.push(a);
            }
            Err(err) => problems.push(Problem {
                path: clip.path.clone(),
                reason: err.to_string(),
            }),
        }
    }
    for problem in &problems {
        eprintln!("{}: {} (left out)", problem.path.display(), problem.reason);
    }
    Ok(LoadedCorpus {
        clips: kept_clips,
        audio,
        sources,
        problems,
    })
}

fn make_folds(
    corpus: &LoadedCorpus,
    protocol: ProtocolName,
    k: usize,
    options: &TrainOptions,
) -> Result<Vec<folds::Fold>> {
    let corpora: std::collections::BTreeSet<_> = corpus.clips.iter().map(|c| c.corpus).collect();
    let protocol = match protocol {
        ProtocolName::Emobox => Protocol::Emobox,
        ProtocolName::Kfold => Protocol::Kfold { k },
        ProtocolName::Loso => Protocol::Loso,
    };
    if protocol == Protocol::Emobox && corpora.len() != 1 {
        bail!("EmoBox folds are per corpus; pool corpora with --protocol kfold or loso");
    }
    let corpus_kind = *corpora.iter().next().context("no clips")?;
    let options = FoldOptions {
        protocol,
        seed: options.seed,
        allow_speaker_overlap: options.allow_speaker_overlap,
    };
    folds::make_folds(&corpus.clips, corpus_kind, &options).context("cannot make folds")
}

/// Train/test indices of fold `k` of a folds JSON, matched to the corpus by path.
fn fold_from_file(corpus: &LoadedCorpus, file: &Path, k: usize) -> Result<(Vec<usize>, Vec<usize>)> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", file.display()))?;
    let folds = json["folds"]
        .as_array()
        .with_context(|| format!("{}: no \"folds\" list", file.display()))?;
    let fold = folds
        .get(k.wrapping_sub(1))
        .with_context(|| format!("{}: --fold {k}, but it has {} folds", file.display(), folds.len()))?;
    let test_paths: std::collections::HashSet<PathBuf> = fold["test"]
        .as_array()
        .with_context(|| format!("{}: fold {k} has no \"test\" list", file.display()))?
        .iter()
        .filter_map(|p| {
            p.as_str()
                .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p)))
        })
        .collect();
    let (test, train): (Vec<usize>, Vec<usize>) = (0..corpus.clips.len()).partition(|&i| {
        let path = &corpus.clips[i].path;
        test_paths.contains(&std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()))
    });
    if test.is_empty() {
        bail!("{}: none of fold {k}'s test files is in --data", file.display());
    }
    Ok((train, test))
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

fn cache_root(options: &TrainOptions) -> PathBuf {
    options.cache_dir.clone().unwrap_or_else(persist::cache_root)
}

/// `--backbone`: scratch, whisper-base, or a checkpoint folder of either family.
fn resolve_backbone(options: &TrainOptions) -> Result<BackboneConfig> {
    let path = match options.backbone.as_str() {
        "scratch" => {
            return Ok(BackboneConfig::Scratch {
                encoder: Wav2Vec2Config::small(),
            });
        }
        "whisper-base" => {
            let dir = persist::cache_root().join("backbones/whisper-base");
            if !dir.join("model.safetensors").is_file() {
                bail!(
                    "--backbone whisper-base: {} is missing; run scripts/get-whisper-base.sh",
                    dir.display()
                );
            }
            dir
        }
        dir => PathBuf::from(dir),
    };
    let path = path
        .canonicalize()
        .with_context(|| format!("--backbone {}", path.display()))?;
    let config_path = path.join("config.json");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&config_path)
            .with_context(|| format!("--backbone: cannot read {}", config_path.display()))?,
    )
    .with_context(|| format!("--backbone: {} is not JSON", config_path.display()))?;
    if json["model_type"] == "whisper" {
        if options.finetune {
            bail!("--finetune: Whisper backbones are frozen");
        }
        let (_, encoder) = whisper::load(&path, &burn::tensor::Device::flex()).context("--backbone")?;
        return Ok(BackboneConfig::Whisper {
            path,
            encoder,
            mode: options.whisper_mode,
        });
    }
    let encoder = Wav2Vec2Config::from_file(&config_path).context("--backbone")?;
    let (_, preprocessor) = wav2vec2::load(&path, &burn::tensor::Device::flex()).context("--backbone")?;
    Ok(BackboneConfig::Wav2vec2 {
        path,
        encoder,
        preprocessor,
        finetune: options.finetune,
    })
}
