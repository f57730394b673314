//! `--out`/`--shard` of `emofuse predict` and `emofuse embed` (one shard of a
//! batch job, written in resumable chunks) and `emofuse merge`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use emofuse::batch::{self, Merged, Shard, ShardSummary, ShardWriter};

use super::{emit, progress_bar};

/// Flags of a command that can run as one shard of a batch job.
#[derive(Debug, Args)]
pub struct ShardArgs {
    /// Write results in chunks into this folder instead of printing them:
    /// a rerun skips finished chunks, `emofuse merge` joins the shards.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// This process's part of the inputs (sorted by path): `I/N` with I from
    /// 0 to N-1, or `auto` from a Slurm job array's or a Kubernetes Indexed
    /// Job's variables.
    #[arg(long, requires = "out")]
    pub shard: Option<String>,
    /// N for `--shard auto`: a Kubernetes Indexed Job's `completions`; in a
    /// Slurm array it makes the array index the shard index (to rerun one shard).
    #[arg(long, requires = "shard")]
    pub shard_count: Option<usize>,
    /// Files per chunk (a killed shard redoes at most one chunk).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub chunk_size: u16,
}

impl ShardArgs {
    pub fn shard(&self) -> Result<Shard> {
        Ok(match self.shard.as_deref() {
            None => Shard::WHOLE,
            Some("auto") => Shard::from_env(self.shard_count)?,
            Some(spec) => spec.parse()?,
        })
    }
}

/// Runs `work` with a progress bar and prints what the shard did.
pub fn run_shard(
    writer: &ShardWriter,
    out: &Path,
    shard: Shard,
    work: impl FnOnce(&ShardWriter, &mut dyn FnMut()) -> Result<ShardSummary, batch::BatchError>,
) -> Result<ExitCode> {
    let progress = progress_bar(writer.len() as u64, "files");
    let summary =
        work(writer, &mut || progress.inc(1)).with_context(|| format!("cannot write into {}", out.display()))?;
    progress.finish_and_clear();
    println!(
        "shard {}/{}: {} files ({} done by an earlier run), {} failed, in {}",
        shard.index,
        shard.count,
        summary.files,
        summary.skipped,
        summary.failed,
        out.display()
    );
    if summary.failed > 0 {
        eprintln!(
            "emofuse: {} file(s) failed: their results say why (\"error\")",
            summary.failed
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The test hook that makes a killed shard deterministic: with
/// `EMOFUSE_TEST_ABORT_AFTER_FILES=N` the process exits as if killed once it
/// has worked on N files (finished chunks on disk, the current one lost).
pub fn abort_after_files() -> impl FnMut() {
    let limit: Option<usize> = std::env::var("EMOFUSE_TEST_ABORT_AFTER_FILES")
        .ok()
        .and_then(|n| n.parse().ok());
    let mut done = 0;
    move || {
        if limit == Some(done) {
            eprintln!("emofuse: EMOFUSE_TEST_ABORT_AFTER_FILES={done}: stopping as if killed");
            std::process::exit(137);
        }
        done += 1;
    }
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The `--out` folder of a sharded `predict` or `embed` job.
    dir: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct MergeReport<'a> {
    kind: batch::Kind,
    shards: usize,
    files: usize,
    failed: usize,
    written: &'a Path,
}

impl std::fmt::Display for MergeReport<'_> {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            out,
            "merged {} shard(s): {} files, {} failed -> {}",
            self.shards,
            self.files,
            self.failed,
            self.written.display()
        )
    }
}

pub fn merge(args: &MergeArgs) -> Result<ExitCode> {
    let Merged {
        kind,
        shards,
        files,
        failed,
        written,
    } = batch::merge(&args.dir).with_context(|| format!("cannot merge {}", args.dir.display()))?;
    let report = MergeReport {
        kind,
        shards,
        files,
        failed,
        written: &written,
    };
    emit(args.json, &report)?;
    Ok(ExitCode::SUCCESS)
}
