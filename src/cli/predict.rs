//! `emofuse predict` (the emotion of audio files) and `emofuse eval` (a model
//! scored on a corpus or one of its folds).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use emofuse::batch::{Kind, ShardWriter};
use emofuse::data::inputs::InputFiles;
use emofuse::data::{self, DatasetKind, Problem};
use emofuse::eval;
use emofuse::infer::FilePrediction;

use super::{
    DeviceArg, FoldArgs, ModelArg, ShardArgs, abort_after_files, emit, load_predictor, progress_bar, report_problems,
    run_shard,
};

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Audio files (any format emofuse reads), or one corpus folder, manifest
    /// (.csv/.jsonl with a `path` column) or list of paths (.txt, one per line).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// A built-in model (`default`, `whisper`) or a model folder [default: default].
    #[arg(long)]
    model: Option<ModelArg>,
    /// One JSON object per file and line.
    #[arg(long)]
    json: bool,
    /// Also predict windows of this many seconds along each file (a timeline).
    /// Files longer than the 10-minute input limit are streamed and always
    /// get a timeline: of these windows, else of 3 s windows side by side.
    #[arg(long)]
    window: Option<f64>,
    /// Seconds between timeline windows.
    #[arg(long, default_value_t = 1.0, requires = "window")]
    hop: f64,
    #[command(flatten)]
    batch: ShardArgs,
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
    let listed = InputFiles::listed(&args.files).context("cannot list the inputs")?;
    let shard = args.batch.shard()?;
    let predictor = load_predictor(args.model.as_ref(), &args.device.open()?)?;
    let window = args.window.map(|window| (window, args.hop));
    if let Some(out) = &args.batch.out {
        let model = ModelArg::or_default(args.model.as_ref()).to_string();
        let job = format!("predict --model {model} --window {window:?}");
        let chunk_size = args.batch.chunk_size.into();
        let inputs = listed.unwrap_or_else(|| InputFiles::named(&args.files));
        let writer = ShardWriter::open(out, Kind::Predictions, &job, shard, &inputs, chunk_size)?;
        let mut abort = abort_after_files();
        return run_shard(&writer, out, shard, |writer, on_file| {
            let predict = |path: &Path, name: &str| {
                abort();
                let mut prediction = predictor.predict_file(path, window).map_err(|err| err.to_string())?;
                prediction.path = PathBuf::from(name);
                Ok(serde_json::to_string(&prediction).expect("a prediction serialises"))
            };
            writer.predictions(predict, on_file)
        });
    }
    let mut problems = Vec::new();
    let mut out = std::io::stdout().lock();
    if !args.json {
        writeln!(out, "{}", FilePrediction::header(predictor.labels()))?;
    }
    // Files named one by one are predicted in the order given.
    let paths = listed.map_or_else(|| args.files.clone(), |inputs| inputs.paths());
    for path in paths {
        match predictor.predict_file(&path, window) {
            Ok(prediction) if args.json => {
                serde_json::to_writer(&mut out, &prediction)?;
                writeln!(out)?;
            }
            Ok(prediction) => write!(out, "{prediction}")?,
            Err(err) => problems.push(Problem {
                path,
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
    let model = ModelArg::or_default(args.model.as_ref()).to_string();
    let report = evaluation.report(model, &args.data, test_fold.map(|fold| format!("fold {}", fold.fold)));
    if let Some(out) = &args.out {
        evaluation.write_files(out, &report)?;
    }
    emit(args.json, &report)?;
    let mut problems = dataset.problems.clone();
    problems.extend(evaluation.problems.iter().cloned());
    Ok(report_problems(&problems))
}
