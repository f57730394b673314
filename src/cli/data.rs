//! `emofuse data`: what is in a corpus, and its speaker-independent folds.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use emofuse::data::folds::{FoldOptions, FoldsReport, Protocol, ProtocolName};
use emofuse::data::summary;

use super::{CorpusArgs, emit, load_corpus, progress_bar, report_problems};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Clips, speakers, labels, durations and formats of a corpus; unreadable files are listed.
    Summary(SummaryArgs),
    /// Speaker-independent train/test folds of a corpus.
    Folds(FoldsArgs),
}

#[derive(Debug, Args)]
pub struct SummaryArgs {
    #[command(flatten)]
    corpus: CorpusArgs,
}

#[derive(Debug, Args)]
pub struct FoldsArgs {
    #[command(flatten)]
    corpus: CorpusArgs,
    /// Folds [default: EmoBox's; EmoDB: speaker-pairs].
    #[arg(long, value_enum)]
    protocol: Option<ProtocolName>,
    /// Number of folds for `kfold`.
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// Seed of the speaker shuffle (`kfold`); the same seed gives the same folds everywhere.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Reproduce EmoBox's file-level TESS, CREMA-D and EmoDB splits, which share speakers between train and test.
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

fn data_summary(args: &SummaryArgs) -> Result<ExitCode> {
    let dataset = load_corpus(&args.corpus)?;
    let progress = progress_bar(dataset.clips.len() as u64, "reading headers");
    let summary = summary::summarise(&dataset, || progress.inc(1));
    progress.finish_and_clear();
    emit(args.corpus.json, &summary)?;
    Ok(report_problems(&summary.problems))
}

fn data_folds(args: &FoldsArgs) -> Result<ExitCode> {
    let dataset = load_corpus(&args.corpus)?;
    let options = FoldOptions {
        protocol: args.protocol.map_or(Protocol::default_for(dataset.corpus), |name| {
            Protocol::from_name(name, args.k)
        }),
        seed: args.seed,
        allow_speaker_overlap: args.allow_speaker_overlap,
    };
    let report = FoldsReport::new(&dataset, &options).with_context(|| {
        format!(
            "cannot make {} folds of {}",
            options.protocol.description(),
            dataset.root.display()
        )
    })?;
    emit(args.corpus.json, &report)?;
    Ok(report_problems(&dataset.problems))
}
