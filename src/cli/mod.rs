//! Command-line flags and one function per command: parse, call the library,
//! print. Results go to stdout (a table, or JSON with `--json`), progress
//! and problems to stderr.

mod backbone;
mod batch;
mod bench;
mod data;
mod embed;
mod explain;
mod export;
mod features;
mod predict;
mod robustness;
mod serve;
mod train;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use emofuse::data::folds::{FoldError, FoldOptions, FoldSource, Protocol, ProtocolName, TestFold};
use emofuse::data::{Dataset, DatasetKind};
use emofuse::device::DeviceChoice;
use emofuse::experiment::ExperimentError;
use emofuse::infer::{BuiltinModel, Predictor};
use emofuse::train::TrainError;

// The sharding flags and loop of `predict` and `embed`.
use batch::{ShardArgs, abort_after_files, run_shard};

/// Speech emotion recognition that holds up in real noise and says why.
#[derive(Debug, Parser)]
#[command(name = "emofuse", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect emotion corpora and make speaker-independent folds.
    Data {
        #[command(subcommand)]
        command: data::DataCommand,
    },
    /// Compute a corpus' features into the on-disk cache, on all cores, so training starts at once.
    Prepare(features::PrepareArgs),
    /// Frame features (MFCC, ZCR, RMS) or the log-mel spectrogram of audio files, as librosa computes them.
    Features(features::FeaturesArgs),
    /// The emotion of audio files (the built-in model unless --model).
    Predict(predict::PredictArgs),
    /// Score a model on a corpus or one of its folds: UA, WA, F1, confusion matrix.
    Eval(predict::EvalArgs),
    /// Train one model (fusion or a single stream); optionally test it on one fold.
    Train(train::TrainArgs),
    /// Train and test every fold of a protocol; UA/WA/F1 mean ± std over folds.
    Cv(train::CvArgs),
    /// Why the model said so: SHAP and Score-CAM for audio files (PNG + JSON), or the SNR study.
    Explain(explain::ExplainArgs),
    /// Score models on their test clips mixed with real noise at each SNR: tables and plots.
    Robustness(robustness::RobustnessArgs),
    /// The web page and JSON API on a local address (record or upload a voice, see the emotion and why).
    Serve(serve::ServeArgs),
    /// Hidden states of a pretrained encoder (Whisper-base, or a wav2vec 2.0 / HuBERT / Whisper checkpoint) for audio files, as .npy.
    Embed(embed::EmbedArgs),
    /// Write a spectral model as ONNX (raw frame features in, calibrated probabilities out).
    Export(export::ExportArgs),
    /// Join the shards of a `predict --out` or `embed --out` job into one file, checking none is missing.
    Merge(batch::MergeArgs),
    /// Pretrained encoders for the temporal stream (convert faster-whisper's model.bin).
    Backbone {
        #[command(subcommand)]
        command: backbone::BackboneCommand,
    },
    /// Measure throughput of a pipeline stage on real clips.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

/// Runs the parsed command; the exit code is non-zero when files were skipped.
pub fn run(cli: Cli) -> Result<ExitCode> {
    dispatch(cli).map_err(with_hint)
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Data { command } => data::run(command),
        Command::Prepare(args) => features::prepare(&args),
        Command::Features(args) => features::features(&args),
        Command::Predict(args) => predict::predict(&args),
        Command::Eval(args) => predict::eval(&args),
        Command::Train(args) => train::train(&args),
        Command::Cv(args) => train::cv(&args),
        Command::Explain(args) => explain::explain(&args),
        Command::Robustness(args) => robustness::robustness(&args),
        Command::Serve(args) => serve::serve(&args),
        Command::Embed(args) => embed::embed(&args),
        Command::Merge(args) => batch::merge(&args),
        Command::Export(args) => export::export(&args),
        Command::Backbone { command } => backbone::run(command),
        Command::Bench { command } => bench::run(command),
    }
}

/// A library error with the flags that would get past it: the library
/// says what is wrong, the command line knows which of its flags fix it.
fn with_hint(err: anyhow::Error) -> anyhow::Error {
    let hint = err.chain().find_map(|cause| {
        // Transparent wrappers hide their inner error from the chain: look inside.
        let experiment = cause.downcast_ref::<ExperimentError>();
        let folds = match experiment {
            Some(ExperimentError::Folds(inner)) => Some(inner),
            _ => cause.downcast_ref::<FoldError>(),
        };
        match (experiment, folds) {
            (Some(ExperimentError::Interrupted), _) => Some("run the same command with --resume to continue"),
            (Some(ExperimentError::Train(TrainError::ConfigChanged { .. })), _) => {
                Some("train again without --resume, or into another --out")
            }
            (_, Some(FoldError::EmoboxSpeakerDependent { .. })) => {
                Some(
                    "--protocol loso (EmoDB: speaker-pairs) for a cross-speaker split, or --allow-speaker-overlap to reproduce EmoBox",
                )
            }
            (_, Some(FoldError::PerCorpus { .. })) => {
                Some("use --protocol leave-one-corpus-out, kfold or loso")
            }
            _ => None,
        }
    });
    match hint {
        Some(hint) => anyhow::anyhow!("{err:#} ({hint})"),
        None => err,
    }
}

/// `--device`, on every command that runs a model.
#[derive(Debug, Args)]
pub struct DeviceArg {
    /// Where models run: cpu, or gpu / gpu:N (a build with the `gpu` feature).
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
}

impl DeviceArg {
    pub fn open(&self) -> Result<Device> {
        self.device.open().with_context(|| format!("--device {}", self.device))
    }
}

/// `--snr`: the conditions of a noise sweep.
#[derive(Debug, Args)]
pub struct SnrArgs {
    /// Conditions: `clean` and SNRs in dB.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "clean,20,10,5,0,-5",
        allow_hyphen_values = true,
        value_parser = emofuse::robustness::parse_condition
    )]
    pub snr: Vec<Option<f64>>,
}

/// The test fold of `train` and `eval`: `--fold K` of `--protocol` or of `--fold-file`.
#[derive(Debug, Args)]
pub struct FoldArgs {
    /// Test on this fold (from 1) of --protocol or --fold-file.
    #[arg(long)]
    fold: Option<usize>,
    #[arg(long, value_enum, requires = "fold")]
    protocol: Option<ProtocolName>,
    /// A folds JSON (`emofuse data folds --json`) to take the test fold from.
    #[arg(long, conflicts_with = "protocol", requires = "fold")]
    fold_file: Option<PathBuf>,
    /// Folds for `--protocol kfold`.
    #[arg(long, default_value_t = 5)]
    k: usize,
}

impl FoldArgs {
    /// The test fold, if one is asked for; `--fold` alone is refused, not ignored.
    pub fn test_fold(&self, seed: u64, allow_speaker_overlap: bool) -> Result<Option<TestFold>> {
        let source = match (&self.protocol, &self.fold_file) {
            (Some(name), _) => FoldSource::Protocol(FoldOptions {
                protocol: Protocol::from_name(*name, self.k),
                seed,
                allow_speaker_overlap,
            }),
            (None, Some(file)) => FoldSource::File(file.clone()),
            (None, None) => match self.fold {
                Some(k) => bail!("--fold {k} needs --protocol or --fold-file to say which folds it is one of"),
                None => return Ok(None),
            },
        };
        let fold = self.fold.expect("clap requires --fold with --protocol and --fold-file");
        Ok(Some(TestFold { source, fold }))
    }
}

/// A corpus as commands name it.
#[derive(Debug, Args)]
pub struct CorpusArgs {
    /// Corpus folder (official layout), or a .csv/.jsonl manifest.
    pub dir: PathBuf,
    /// Which layout to read; `auto` recognises it from the file names.
    #[arg(long, value_enum, default_value_t = DatasetKind::Auto)]
    pub dataset: DatasetKind,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn load_corpus(args: &CorpusArgs) -> Result<Dataset> {
    emofuse::data::load(&args.dir, args.dataset).context("cannot read the corpus")
}

/// `--model` of the commands that use a trained model: a built-in model's
/// name, or a folder (anything with a `/`, or an existing directory).
#[derive(Debug, Clone, PartialEq)]
pub enum ModelArg {
    Builtin(BuiltinModel),
    Folder(PathBuf),
}

impl std::str::FromStr for ModelArg {
    type Err = String;

    fn from_str(text: &str) -> Result<ModelArg, String> {
        if text.contains(std::path::MAIN_SEPARATOR) || text.contains('/') || Path::new(text).is_dir() {
            return Ok(ModelArg::Folder(PathBuf::from(text)));
        }
        <BuiltinModel as clap::ValueEnum>::from_str(text, false)
            .map(ModelArg::Builtin)
            .map_err(|_| format!("no model named {text:?}: name a built-in model (default, whisper) or a model folder"))
    }
}

/// As reports name the model: the folder, or `(built-in NAME)`.
impl std::fmt::Display for ModelArg {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelArg::Builtin(which) => write!(out, "(built-in {})", which.name()),
            ModelArg::Folder(dir) => write!(out, "{}", dir.display()),
        }
    }
}

impl ModelArg {
    /// `--model`, or the default built-in model without one.
    pub fn or_default(model: Option<&ModelArg>) -> ModelArg {
        model.cloned().unwrap_or(ModelArg::Builtin(BuiltinModel::Default))
    }

    /// The folder named, if a folder was named.
    pub fn folder(&self) -> Option<&Path> {
        match self {
            ModelArg::Folder(dir) => Some(dir),
            ModelArg::Builtin(_) => None,
        }
    }

    /// How the model is called (the web page's title).
    pub fn name(&self) -> String {
        match self {
            ModelArg::Builtin(which) => which.name().to_owned(),
            ModelArg::Folder(dir) => dir
                .file_name()
                .map_or_else(|| dir.display().to_string(), |name| name.to_string_lossy().into_owned()),
        }
    }
}

/// Loads `--model`, or the default built-in model.
pub fn load_predictor(model: Option<&ModelArg>, device: &Device) -> Result<Predictor> {
    match ModelArg::or_default(model) {
        ModelArg::Folder(dir) => {
            Predictor::load(&dir, device).with_context(|| format!("cannot load the model {}", dir.display()))
        }
        ModelArg::Builtin(which) => {
            Predictor::named(which, device).with_context(|| format!("cannot load the built-in model {}", which.name()))
        }
    }
}

/// `--cache-dir`, or `$EMOFUSE_CACHE`, or `~/.cache/emofuse`.
pub fn cache_root(cache_dir: Option<&Path>) -> PathBuf {
    cache_dir.map_or_else(emofuse::persist::cache_root, Path::to_path_buf)
}

pub fn progress_bar(len: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len).with_message(message);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} [{elapsed_precise}, eta {eta}]")
            .expect("the template is valid"),
    );
    bar
}

/// Prints each file (or clip) a bulk command skipped, as `path: reason`, on
/// stderr; exit code 2 if any.
pub fn report_problems(problems: &[impl std::fmt::Display]) -> ExitCode {
    for problem in problems {
        eprintln!("{problem}");
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("emofuse: {} file(s) skipped", problems.len());
        ExitCode::from(2)
    }
}

pub fn print_json(value: &impl Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).context("cannot write JSON")?;
    writeln!(out).context("cannot write to stdout")
}

/// The report as JSON with `json`, else as its table.
pub fn emit(json: bool, report: &(impl Serialize + std::fmt::Display)) -> Result<()> {
    if json {
        return print_json(report);
    }
    write!(std::io::stdout().lock(), "{report}").context("cannot write to stdout")
}
