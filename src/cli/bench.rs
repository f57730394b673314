//! `emofuse bench`: throughput of a pipeline stage on real clips.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use emofuse::bench::{self, EncodeReport, FeaturesReport, ForwardReport, PredictReport};

use super::{DeviceArg, ModelArg, emit, load_predictor, progress_bar};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// MFCC + ZCR + RMS extraction (audio decoded first), single-threaded and on all cores.
    Features(FeaturesBenchArgs),
    /// wav2vec 2.0 / HuBERT / Whisper encoder forward time per clip, and peak memory.
    Forward(ForwardBenchArgs),
    /// Hidden states of real clips as the training cache builds them (batches of similar length): clips/s.
    Encode(EncodeBenchArgs),
    /// Training steps of the default model's architecture (spectral CNN) on a fixed batch.
    TrainStep(TrainStepBenchArgs),
    /// End-to-end prediction of real clips on one thread: decode → features → model → probabilities.
    Predict(PredictBenchArgs),
}

#[derive(Debug, Args)]
pub struct TrainStepBenchArgs {
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Frames per clip (116 ≈ 3.7 s at hop 512).
    #[arg(long, default_value_t = 116)]
    frames: usize,
    /// Timed steps (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 30)]
    steps: usize,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Debug, Args)]
pub struct PredictBenchArgs {
    /// A built-in model (`default`, `whisper`) or a model folder [default: default].
    #[arg(long)]
    model: Option<ModelArg>,
    /// Corpus folder whose clips are predicted (read into memory first).
    #[arg(long)]
    data: PathBuf,
    /// Only the first N clips (in path order).
    #[arg(long, default_value_t = 200)]
    limit: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Debug, Args)]
pub struct ForwardBenchArgs {
    /// Checkpoint folder: Hugging Face wav2vec 2.0 / HuBERT, or Whisper (`emofuse backbone convert`).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Clip lengths to time, in seconds.
    #[arg(long, value_delimiter = ',', default_value = "3,10")]
    seconds: Vec<f64>,
    /// Timed forwards per length (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Debug, Args)]
pub struct EncodeBenchArgs {
    /// Checkpoint folder: Whisper (`emofuse backbone convert`; trimmed mode), or Hugging Face wav2vec 2.0 / HuBERT.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Corpus folder whose clips are encoded (decoded first, not timed).
    #[arg(long)]
    data: PathBuf,
    /// Only the first N clips (in path order).
    #[arg(long, default_value_t = 200)]
    limit: usize,
    /// Clips per forward, as the training cache batches them.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Debug, Args)]
pub struct FeaturesBenchArgs {
    /// Corpus folder whose clips are measured (e.g. ../shared/data/ravdess).
    #[arg(long)]
    data: PathBuf,
    /// Measure only the first N clips (in path order).
    #[arg(long)]
    limit: Option<usize>,
    /// Timed passes over the clips; the best is reported.
    #[arg(long, default_value_t = 3)]
    passes: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(command: BenchCommand) -> Result<ExitCode> {
    match command {
        BenchCommand::Features(args) => features(&args),
        BenchCommand::Forward(args) => forward(&args),
        BenchCommand::Encode(args) => encode(&args),
        BenchCommand::Predict(args) => predict(&args),
        BenchCommand::TrainStep(args) => train_step(&args),
    }?;
    Ok(ExitCode::SUCCESS)
}

fn features(args: &FeaturesBenchArgs) -> Result<()> {
    let progress = progress_bar(0, "decoding");
    let waveforms = bench::decode_corpus(&args.data, args.limit, || progress.inc(1))
        .with_context(|| format!("cannot decode {}", args.data.display()))?;
    progress.finish_and_clear();
    emit(args.json, &FeaturesReport::measure(&waveforms, args.passes))
}

fn forward(args: &ForwardBenchArgs) -> Result<()> {
    let report = ForwardReport::measure(&args.checkpoint, &args.seconds, args.runs, &args.device.open()?)
        .with_context(|| format!("cannot time {}", args.checkpoint.display()))?;
    emit(args.json, &report)
}

fn encode(args: &EncodeBenchArgs) -> Result<()> {
    let report = EncodeReport::measure(
        &args.checkpoint,
        &args.data,
        args.limit,
        args.batch,
        &args.device.open()?,
    )
    .with_context(|| format!("cannot time {} on {}", args.checkpoint.display(), args.data.display()))?;
    emit(args.json, &report)
}

fn predict(args: &PredictBenchArgs) -> Result<()> {
    let predictor = load_predictor(args.model.as_ref(), &args.device.open()?)?;
    let model = ModelArg::or_default(args.model.as_ref()).to_string();
    let report = PredictReport::measure(&predictor, model, &args.data, args.limit)
        .with_context(|| format!("cannot time predictions on {}", args.data.display()))?;
    emit(args.json, &report)
}

fn train_step(args: &TrainStepBenchArgs) -> Result<()> {
    let report = bench::spectral_train_steps(args.batch, args.frames, args.steps, &args.device.open()?);
    emit(args.json, &report)
}
