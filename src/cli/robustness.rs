//! `emofuse robustness`: the SNR sweep over models, with tables and plots.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use emofuse::data::DatasetKind;
use emofuse::noise::SnrReference;
use emofuse::robustness::{Sweep, SweepConfig};

use super::{DeviceArg, SnrArgs, emit, progress_bar, report_problems};

#[derive(Debug, Args)]
pub struct RobustnessArgs {
    /// Models to compare: a model folder (tested on the test clips of its
    /// split.json, or on --data), or a `cv` folder (each fold's model on its
    /// own test fold). Repeat for each model.
    #[arg(long, required = true)]
    model: Vec<PathBuf>,
    /// Noise corpus; its test pool (never used in training) is mixed in.
    #[arg(long)]
    noise_dir: PathBuf,
    /// Test clips for models without a split.json.
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DatasetKind::Auto)]
    dataset: DatasetKind,
    #[command(flatten)]
    snr: SnrArgs,
    /// Also sweep each noise category alone (and draw a heat map per model).
    #[arg(long)]
    per_category: bool,
    /// What the speech power of the SNR is measured over.
    #[arg(long, value_enum, default_value_t = SnrReference::WholeClip)]
    reference: SnrReference,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder: robustness.json, robustness.csv, summary.csv, PNG plots.
    /// A killed sweep run again with the same arguments continues where it stopped.
    #[arg(long)]
    out: PathBuf,
    /// Print the whole report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: DeviceArg,
}

pub fn robustness(args: &RobustnessArgs) -> Result<ExitCode> {
    let config = SweepConfig {
        snrs: args.snr.snr.clone(),
        per_category: args.per_category,
        reference: args.reference,
        seed: args.seed,
    };
    let data = args.data.as_deref().map(|data| (data, args.dataset));
    let device = args.device.open()?;
    let sweep = Sweep::prepare(&args.model, data, &args.noise_dir, config, &args.out, &device)?;
    eprintln!(
        "noise: {} test-pool clips in {} categories (of {})",
        sweep.noise.clips.len(),
        sweep.noise.categories().len(),
        sweep.noise_clips
    );
    if sweep.done() > 0 {
        eprintln!("continuing: {} conditions were done earlier", sweep.done());
    }
    let progress = progress_bar(sweep.conditions() as u64, "sweep");
    progress.set_position(sweep.done() as u64);
    let (report, warning) = sweep.run(|| progress.inc(1))?;
    progress.finish_and_clear();
    if let Some(warning) = warning {
        // The results are complete; only a restart after a kill would have redone work.
        eprintln!("warning: {warning}");
    }
    emit(args.json, &report)?;
    let unscored: usize = report.rows.iter().map(|r| r.unscored_clips).max().unwrap_or(0);
    if unscored > 0 {
        eprintln!("note: up to {unscored} test clips per model have labels it does not know (not scored)");
    }
    Ok(report_problems(&report.problems))
}
