//! Command-line flags and one function per command. Results go to stdout
//! (a table, or JSON with `--json`), progress and problems to stderr.

mod backbone;
mod bench;
mod data;
mod embed;
mod explain;
mod features;
mod predict;
mod robustness;
mod serve;
mod train;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use emofuse::data::Problem;

pub use data::ProtocolName;

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
    /// Hidden states of a wav2vec 2.0 / HuBERT checkpoint for audio files, as .npy.
    Embed(embed::EmbedArgs),
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
        Command::Backbone { command } => backbone::run(command),
        Command::Bench { command } => bench::run(command),
    }
}

pub fn progress_bar(len: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len).with_message(message);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} [{elapsed_precise}, eta {eta}]")
            .expect("the template is valid"),
    );
    bar
}

/// Prints each skipped file as `path: reason` on stderr; exit code 2 if any.
pub fn report_problems(problems: &[Problem]) -> ExitCode {
    for problem in problems {
        eprintln!("{}: {}", problem.path.display(), problem.reason);
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

/// `key: count` pairs separated by commas.
pub fn joined<K>(counts: &std::collections::BTreeMap<K, usize>, name: impl Fn(&K) -> String) -> String {
    counts
        .iter()
        .map(|(key, count)| format!("{}: {count}", name(key)))
        .collect::<Vec<_>>()
        .join(", ")
}
