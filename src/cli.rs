//! Command-line flags and one function per command. Results go to stdout
//! (a table, or JSON with `--json`), progress and problems to stderr.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use emofuse::data::folds::{self, FoldOptions, Protocol};
use emofuse::data::summary::{self, Summary};
use emofuse::data::{self, Dataset, DatasetKind, Problem};

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
        command: DataCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DataCommand {
    /// Clips, speakers, labels, durations and formats of a corpus; unreadable files are listed.
    Summary(SummaryArgs),
    /// Speaker-independent train/test folds of a corpus.
    Folds(FoldsArgs),
}

#[derive(Debug, Args)]
struct CorpusArgs {
    /// Corpus folder (official layout), or a .csv/.jsonl manifest.
    dir: PathBuf,
    /// Which layout to read; `auto` recognises it from the file names.
    #[arg(long, value_enum, default_value_t = DatasetKind::Auto)]
    dataset: DatasetKind,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct SummaryArgs {
    #[command(flatten)]
    corpus: CorpusArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProtocolName {
    /// EmoBox's published folds (RAVDESS, SAVEE; TESS and CREMA-D need --allow-speaker-overlap).
    Emobox,
    /// k folds of whole speakers, shuffled by --seed.
    Kfold,
    /// Leave one speaker out.
    Loso,
}

#[derive(Debug, Args)]
struct FoldsArgs {
    #[command(flatten)]
    corpus: CorpusArgs,
    #[arg(long, value_enum)]
    protocol: ProtocolName,
    /// Number of folds for `kfold`.
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// Seed of the speaker shuffle (`kfold`); the same seed gives the same folds everywhere.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Reproduce EmoBox's file-level TESS/CREMA-D splits, which share speakers between train and test.
    #[arg(long)]
    allow_speaker_overlap: bool,
}

/// Runs the parsed command; the exit code is non-zero when files were skipped.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Data {
            command: DataCommand::Summary(args),
        } => data_summary(&args),
        Command::Data {
            command: DataCommand::Folds(args),
        } => data_folds(&args),
    }
}

fn load_corpus(args: &CorpusArgs) -> Result<Dataset> {
    data::load(&args.dir, args.dataset).context("cannot read the corpus")
}

fn data_summary(args: &SummaryArgs) -> Result<ExitCode> {
    let dataset = load_corpus(&args.corpus)?;
    let progress = progress_bar(dataset.clips.len() as u64, "reading headers");
    let summary = summary::summarise(&dataset, || progress.inc(1));
    progress.finish_and_clear();
    if args.corpus.json {
        print_json(&summary)?;
    } else {
        print_summary(&summary)?;
    }
    Ok(report_problems(&summary.problems))
}

fn data_folds(args: &FoldsArgs) -> Result<ExitCode> {
    let dataset = load_corpus(&args.corpus)?;
    let protocol = match args.protocol {
        ProtocolName::Emobox => Protocol::Emobox,
        ProtocolName::Kfold => Protocol::Kfold { k: args.k },
        ProtocolName::Loso => Protocol::Loso,
    };
    let options = FoldOptions {
        protocol,
        seed: args.seed,
        allow_speaker_overlap: args.allow_speaker_overlap,
    };
    let folds = folds::make_folds(&dataset.clips, dataset.corpus, &options).with_context(|| {
        format!(
            "cannot make {} folds of {}",
            protocol_name(protocol),
            dataset.root.display()
        )
    })?;
    let speaker_independent = folds
        .iter()
        .enumerate()
        .all(|(i, fold)| folds::check_fold(&dataset.clips, fold, i + 1, true).is_ok());
    let path = |i: &usize| dataset.clips[*i].path.display().to_string();
    let report = FoldsReport {
        dataset: dataset.corpus.as_str(),
        protocol,
        seed: args.seed,
        speaker_independent,
        folds: folds
            .iter()
            .map(|fold| FoldReport {
                train: fold.train.iter().map(path).collect(),
                test: fold.test.iter().map(path).collect(),
                test_speakers: fold.test_speakers.clone(),
                train_labels: folds::class_balance(&dataset.clips, &fold.train),
                test_labels: folds::class_balance(&dataset.clips, &fold.test),
            })
            .collect(),
        problems: dataset.problems.clone(),
    };
    if args.corpus.json {
        print_json(&report)?;
    } else {
        print_folds(&report)?;
    }
    Ok(report_problems(&dataset.problems))
}

#[derive(Serialize)]
struct FoldsReport {
    dataset: &'static str,
    protocol: Protocol,
    seed: u64,
    speaker_independent: bool,
    folds: Vec<FoldReport>,
    problems: Vec<Problem>,
}

#[derive(Serialize)]
struct FoldReport {
    train: Vec<String>,
    test: Vec<String>,
    test_speakers: Vec<String>,
    train_labels: std::collections::BTreeMap<String, usize>,
    test_labels: std::collections::BTreeMap<String, usize>,
}

fn protocol_name(protocol: Protocol) -> String {
    match protocol {
        Protocol::Emobox => "emobox".into(),
        Protocol::Kfold { k } => format!("speaker {k}-fold"),
        Protocol::Loso => "leave-one-speaker-out".into(),
    }
}

fn progress_bar(len: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len).with_message(message);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} [{elapsed_precise}, eta {eta}]")
            .expect("the template is valid"),
    );
    bar
}

/// Prints each skipped file as `path: reason` on stderr; exit code 2 if any.
fn report_problems(problems: &[Problem]) -> ExitCode {
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

fn print_json(value: &impl Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).context("cannot write JSON")?;
    writeln!(out).context("cannot write to stdout")
}

fn print_summary(summary: &Summary) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let d = &summary.duration_s;
    writeln!(out, "dataset       {} ({})", summary.dataset.as_str(), summary.root)?;
    writeln!(out, "clips         {}", summary.clips)?;
    writeln!(out, "speakers      {}", summary.speakers)?;
    writeln!(
        out,
        "duration      total {:.1} s ({:.2} h), min {:.3} s, median {:.3} s, max {:.3} s",
        d.total,
        d.total / 3600.0,
        d.min,
        d.median,
        d.max
    )?;
    writeln!(
        out,
        "sample rates  {}",
        joined(&summary.sample_rates, |rate| format!("{rate} Hz"))
    )?;
    writeln!(out, "channels      {}", joined(&summary.channels, |c| c.to_string()))?;
    writeln!(out, "formats       {}", joined(&summary.containers, |c| c.clone()))?;
    writeln!(out, "labels")?;
    for (label, count) in &summary.labels {
        writeln!(out, "  {label:<12} {count:>6}")?;
    }
    writeln!(out, "clips per speaker")?;
    for (speaker, count) in &summary.per_speaker {
        writeln!(out, "  {speaker:<16} {count:>6}")?;
    }
    writeln!(out, "problems      {}", summary.problems.len())?;
    Ok(())
}

fn print_folds(report: &FoldsReport) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} folds of {} ({}, seed {}), {}",
        report.folds.len(),
        report.dataset,
        protocol_name(report.protocol),
        report.seed,
        if report.speaker_independent {
            "speaker-independent"
        } else {
            "SPEAKERS SHARED between train and test"
        }
    )?;
    writeln!(
        out,
        "{:<5} {:>6} {:>6}  {:<24} test labels",
        "fold", "train", "test", "test speakers"
    )?;
    for (i, fold) in report.folds.iter().enumerate() {
        // The corpus prefix is the same on every id: the table shows the bare ids.
        let speakers = if fold.test_speakers.len() > 8 {
            format!("{} speakers", fold.test_speakers.len())
        } else {
            let bare = fold
                .test_speakers
                .iter()
                .map(|s| s.split_once(':').map_or(s.as_str(), |(_, id)| id));
            bare.collect::<Vec<_>>().join(",")
        };
        let labels = joined(&fold.test_labels, |label| label.clone());
        writeln!(
            out,
            "{:<5} {:>6} {:>6}  {:<24} {}",
            i + 1,
            fold.train.len(),
            fold.test.len(),
            speakers,
            labels
        )?;
    }
    Ok(())
}

/// `key: count` pairs separated by commas.
fn joined<K>(counts: &std::collections::BTreeMap<K, usize>, name: impl Fn(&K) -> String) -> String {
    counts
        .iter()
        .map(|(key, count)| format!("{}: {count}", name(key)))
        .collect::<Vec<_>>()
        .join(", ")
}
