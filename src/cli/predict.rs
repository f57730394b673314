//! `emofuse predict` (the emotion of audio files) and `emofuse eval` (a model
//! scored on a corpus or one of its folds).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use emofuse::data::{self, DatasetKind, Problem};
use emofuse::eval;
use emofuse::infer::{BuiltinModel, FilePrediction};

use super::{DeviceArg, FoldArgs, ModelArg, emit, load_predictor, progress_bar, report_problems};

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Audio files (any format emofuse reads).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// A built-in model (`default`, `whisper`) or a model folder [default: default].
    #[arg(long)]
    model: Option<ModelArg>,
    /// One JSON object per file and line.
    #[arg(long)]
    json: bool,
    /// Also predict windows of this many seconds along each file (a timeline).
    #[arg(long)]
    window: Option<f64>,
    /// Seconds between timeline windows.
    #[arg(long, default_value_t = 1.0, requires = "window")]
    hop: f64,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A built-in model (`default`, `whisper`) or a model folder [default: default].
    #[arg(long)]
    model: Option<ModelArg>,
    /// Corpus folder or manifest.
    #[arg(long)]
    data: PathBuf,
    #[arg(long, value_enum, default_value_t = DatasetKind::Auto)]
    dataset: DatasetKind,
    /// Without a fold every clip is scored.
    #[command(flatten)]
    fold: FoldArgs,
    /// Seed of `--protocol kfold`'s speaker shuffle.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write metrics.json, metrics.csv, predictions.csv and confusion.png here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the metrics as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArg,
}

pub fn predict(args: &PredictArgs) -> Result<ExitCode> {
    let predictor = load_predictor(args.model.as_ref(), &args.device.open()?)?;
    let mut problems = Vec::new();
    let mut out = std::io::stdout().lock();
    if !args.json {
        writeln!(out, "{}", FilePrediction::header(predictor.labels()))?;
    }
    for path in &args.files {
        match predictor.predict_file(path, args.window.map(|window| (window, args.hop))) {
            Ok(prediction) if args.json => {
                serde_json::to_writer(&mut out, &prediction)?;
                writeln!(out)?;
            }
            Ok(prediction) => write!(out, "{prediction}")?,
            Err(err) => problems.push(Problem {
                path: path.clone(),
                reason: err.to_string(),
            }),
        }
    }
    drop(out);
    Ok(report_problems(&problems))
}

pub fn eval(args: &EvalArgs) -> Result<ExitCode> {
    let test_fold = args.fold.test_fold(args.seed, false)?;
    let predictor = load_predictor(args.model.as_ref(), &args.device.open()?)?;
    let dataset = data::load(&args.data, args.dataset)
        .with_context(|| format!("cannot read the corpus {}", args.data.display()))?;
    let clips: Vec<&data::Clip> = match &test_fold {
        Some(fold) => {
            let (_, test) = fold.split(&dataset.clips).context("cannot make the test fold")?;
            test.iter().map(|&i| &dataset.clips[i]).collect()
        }
        None => dataset.clips.iter().collect(),
    };
    let progress = progress_bar(clips.len() as u64, "decoding");
    let evaluation = eval::evaluate(&predictor, &clips, || progress.inc(1))
        .with_context(|| format!("cannot score {}", args.data.display()))?;
    progress.finish_and_clear();
    let model = args.model.as_ref().map_or_else(
        || ModelArg::Builtin(BuiltinModel::Default).to_string(),
        ToString::to_string,
    );
    let report = evaluation.report(model, &args.data, test_fold.map(|fold| format!("fold {}", fold.fold)));
    if let Some(out) = &args.out {
        evaluation.write_files(out, &report)?;
    }
    emit(args.json, &report)?;
    let mut problems = dataset.problems.clone();
    problems.extend(evaluation.problems.iter().cloned());
    Ok(report_problems(&problems))
}
