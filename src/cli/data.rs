//! `emofuse data`: what is in a corpus, and its speaker-independent folds.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use emofuse::data::folds::{self, FoldOptions, Protocol};
use emofuse::data::summary::{self, Summary};
use emofuse::data::{self, Dataset, DatasetKind, Problem};

use super::{joined, print_json, progress_bar, report_problems};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Clips, speakers, labels, durations and formats of a corpus; unreadable files are listed.
    Summary(SummaryArgs),
    /// Speaker-independent train/test folds of a corpus.
    Folds(FoldsArgs),
}

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

#[derive(Debug, Args)]
pub struct SummaryArgs {
    #[command(flatten)]
    corpus: CorpusArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtocolName {
    /// EmoBox's published folds (RAVDESS, SAVEE; TESS and CREMA-D need --allow-speaker-overlap).
    Emobox,
    /// k folds of whole speakers, shuffled by --seed.
    Kfold,
    /// Leave one speaker out.
    Loso,
}

#[derive(Debug, Args)]
pub struct FoldsArgs {
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

/// Runs one `emofuse data …` command.
pub fn run(command: DataCommand) -> Result<ExitCode> {
    match command {
        DataCommand::Summary(args) => data_summary(&args),
        DataCommand::Folds(args) => data_folds(&args),
    }
}

pub fn load_corpus(args: &CorpusArgs) -> Result<Dataset> {
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

impl ProtocolName {
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolName::Emobox => "emobox",
            ProtocolName::Kfold => "kfold",
            ProtocolName::Loso => "loso",
        }
    }
}
