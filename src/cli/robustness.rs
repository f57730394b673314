//! `emofuse robustness`: the SNR sweep over models, with tables and plots.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use emofuse::data::{self, DatasetKind};
use emofuse::infer::Predictor;
use emofuse::noise::{NoiseBank, SnrReference};
use emofuse::persist;
use emofuse::plot::{self, Series};
use emofuse::robustness::{self, ModelUnderTest, SweepConfig, SweepReport, SweepRow};

use super::{print_json, progress_bar};

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
    /// Conditions: `clean` and SNRs in dB.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "clean,20,10,5,0,-5",
        allow_hyphen_values = true
    )]
    snr: Vec<String>,
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
}

pub fn robustness(args: &RobustnessArgs) -> Result<ExitCode> {
    let snrs = parse_snrs(&args.snr)?;
    let noise = NoiseBank::load(&args.noise_dir).context("cannot read the noise corpus")?;
    let (_, test_pool) = noise.split(args.seed);
    eprintln!(
        "noise: {} test-pool clips in {} categories (of {})",
        test_pool.clips.len(),
        test_pool.categories().len(),
        noise.clips.len()
    );
    let mut models = Vec::new();
    for dir in &args.model {
        models.extend(models_in(dir, args.data.as_deref(), args.dataset)?);
    }
    let config = SweepConfig {
        snrs: snrs.clone(),
        per_category: args.per_category,
        reference: args.reference,
        seed: args.seed,
    };
    let conditions = snrs.iter().filter(|s| s.is_some()).count()
        * (1 + if args.per_category {
            test_pool.categories().len()
        } else {
            0
        })
        + snrs.iter().filter(|s| s.is_none()).count();
    // Finished conditions are journaled: a killed sweep, run again, continues.
    let job = serde_json::json!({
        "config": config,
        "noise": test_pool.clips.iter().map(|c| c.path.display().to_string()).collect::<Vec<_>>(),
        "models": models
            .iter()
            .map(|m| (&m.name, &m.fold, &m.predictor.config().training, &m.clips))
            .collect::<Vec<_>>(),
    });
    let journal_key = serde_json::json!(blake3::hash(&serde_json::to_vec(&job)?).to_hex().to_string());
    let journal_path = args.out.join(".robustness.journal.jsonl");
    let (mut journal, done) = persist::Journal::open::<SweepRow>(&journal_path, &journal_key)
        .with_context(|| format!("cannot write {}", journal_path.display()))?;
    if !done.is_empty() {
        eprintln!("continuing: {} conditions were done earlier", done.len());
    }
    let progress = progress_bar((models.len() * conditions) as u64, "sweep");
    progress.set_position(done.len() as u64);
    let mut journal_error = None;
    let report = robustness::sweep(&models, &test_pool, &config, &done, |row| {
        progress.inc(1);
        if let Err(err) = journal.append(row) {
            journal_error.get_or_insert(err);
        }
    });
    progress.finish_and_clear();
    if let Some(err) = journal_error {
        // The results are complete; only a restart after a kill would have redone work.
        eprintln!("warning: cannot write {}: {err}", journal_path.display());
    }
    write_outputs(&args.out, &report, &test_pool.categories())?;
    journal
        .finish()
        .with_context(|| format!("cannot remove {}", journal_path.display()))?;
    if args.json {
        print_json(&report)?;
    } else {
        print_table(&report, &snrs);
    }
    for problem in &report.problems {
        eprintln!("{problem} (left out)");
    }
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// `clean` → `None`, a number of dB → `Some`.
pub(crate) fn parse_snrs(values: &[String]) -> Result<Vec<Option<f64>>> {
    values
        .iter()
        .map(|s| match s.trim() {
            "clean" => Ok(None),
            v => v
                .parse::<f64>()
                .map(Some)
                .with_context(|| format!("--snr {v:?}: want clean or a number of dB")),
        })
        .collect()
}

/// The models of a folder: one model, or one per `fold-K` of a cv folder.
pub(crate) fn models_in(dir: &Path, data: Option<&Path>, dataset: DatasetKind) -> Result<Vec<ModelUnderTest>> {
    // The folder's name as given (a symlink names its model), or its real one for `.` and `..`.
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .or_else(|| {
            let real = dir.canonicalize().ok()?;
            real.file_name().map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| dir.display().to_string());
    if dir.join("config.json").is_file() {
        return Ok(vec![model_under_test(dir, &name, "all", data, dataset)?]);
    }
    let mut folds: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let k = e.file_name().to_str()?.strip_prefix("fold-")?.parse().ok()?;
            Some((k, e.path()))
        })
        .collect();
    folds.sort();
    if folds.is_empty() {
        bail!(
            "{}: neither a model (config.json) nor a cv folder (fold-K/)",
            dir.display()
        );
    }
    folds
        .iter()
        .map(|(k, fold_dir)| model_under_test(fold_dir, &name, &format!("fold {k}"), data, dataset))
        .collect()
}

fn model_under_test(
    dir: &Path,
    name: &str,
    fold: &str,
    data: Option<&Path>,
    dataset: DatasetKind,
) -> Result<ModelUnderTest> {
    let predictor = Predictor::load(dir).with_context(|| format!("cannot load the model {}", dir.display()))?;
    let split = dir.join("split.json");
    let split_test: Vec<PathBuf> = if split.is_file() {
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&split)?)
            .with_context(|| format!("{}: not JSON", split.display()))?;
        json["test"]
            .as_array()
            .with_context(|| format!("{}: no \"test\" list", split.display()))?
            .iter()
            .filter_map(|p| p.as_str().map(PathBuf::from))
            .collect()
    } else {
        Vec::new()
    };
    let clips = match data {
        // --data names the test clips of a model trained on every clip.
        Some(data) if split_test.is_empty() => {
            let dataset = data::load(data, dataset).with_context(|| format!("cannot read {}", data.display()))?;
            dataset.clips.into_iter().map(|c| (c.path, c.label)).collect()
        }
        _ if split_test.is_empty() => bail!(
            "{}: the model has no test fold (no split.json, or trained on every clip); give test clips with --data",
            dir.display()
        ),
        _ => {
            // The labels come from the corpus layout, as in training.
            let root = common_root(&split_test);
            let dataset = data::load(&root, dataset).with_context(|| format!("cannot read {}", root.display()))?;
            let wanted: std::collections::HashSet<&PathBuf> = split_test.iter().collect();
            dataset
                .clips
                .into_iter()
                .filter(|c| wanted.contains(&c.path))
                .map(|c| (c.path, c.label))
                .collect()
        }
    };
    Ok(ModelUnderTest {
        name: name.to_owned(),
        fold: fold.to_owned(),
        predictor,
        clips,
    })
}

/// The deepest folder holding all `paths`.
fn common_root(paths: &[PathBuf]) -> PathBuf {
    let mut root = paths[0].parent().map(Path::to_path_buf).unwrap_or_default();
    while !paths.iter().all(|p| p.starts_with(&root)) {
        if !root.pop() {
            break;
        }
    }
    root
}

fn snr_name(snr: Option<f64>) -> String {
    snr.map_or("clean".into(), |s| format!("{s} dB"))
}

fn print_table(report: &SweepReport, snrs: &[Option<f64>]) {
    let header: String = snrs.iter().map(|s| format!("{:>12}", snr_name(*s))).collect();
    println!(
        "UA % (mean ± std over folds)\n{:<28}{header}{:>12}",
        "model", "mean rel."
    );
    for degradation in &report.degradation {
        let cells: String = snrs
            .iter()
            .map(|&snr| {
                report
                    .summary
                    .iter()
                    .find(|s| s.model == degradation.model && s.category.is_none() && s.snr_db == snr)
                    .map_or(format!("{:>12}", "-"), |s| {
                        format!("{:>7.1} ±{:>4.1}", 100.0 * s.ua.mean, 100.0 * s.ua.std)
                    })
            })
            .collect();
        println!(
            "{:<28}{cells}{:>11.1}%",
            degradation.model,
            100.0 * degradation.mean_relative_ua
        );
    }
}

fn write_outputs(out: &Path, report: &SweepReport, categories: &[String]) -> Result<()> {
    let write = |name: &str, bytes: &[u8]| {
        persist::write_atomic(&out.join(name), bytes)
            .with_context(|| format!("cannot write {}", out.join(name).display()))
    };
    write("robustness.json", &serde_json::to_vec_pretty(report)?)?;
    let mut rows = String::from("model,fold,snr_db,category,ua,wa,macro_f1,clips\n");
    for r in &report.rows {
        rows += &format!(
            "{},{},{},{},{:.4},{:.4},{:.4},{}\n",
            r.model,
            r.fold,
            r.snr_db.map_or("clean".into(), |s| s.to_string()),
            r.category.as_deref().unwrap_or("all"),
            r.ua,
            r.wa,
            r.macro_f1,
            r.clips
        );
    }
    write("robustness.csv", rows.as_bytes())?;
    let mut summary = String::from("model,snr_db,category,ua_mean,ua_std,wa_mean,macro_f1_mean,relative_ua\n");
    for s in &report.summary {
        summary += &format!(
            "{},{},{},{:.4},{:.4},{:.4},{:.4},{:.4}\n",
            s.model,
            s.snr_db.map_or("clean".into(), |v| v.to_string()),
            s.category.as_deref().unwrap_or("all"),
            s.ua.mean,
            s.ua.std,
            s.wa.mean,
            s.macro_f1.mean,
            s.relative_ua
        );
    }
    write("summary.csv", summary.as_bytes())?;

    // UA against SNR, clean on the left and the SNRs as given.
    let snrs = &report.config.snrs;
    let ticks: Vec<(f64, String)> = snrs.iter().enumerate().map(|(i, s)| (i as f64, snr_name(*s))).collect();
    let series: Vec<Series> = report
        .degradation
        .iter()
        .map(|d| Series {
            name: d.model.clone(),
            points: snrs
                .iter()
                .enumerate()
                .filter_map(|(i, &snr)| {
                    let s = report
                        .summary
                        .iter()
                        .find(|s| s.model == d.model && s.category.is_none() && s.snr_db == snr)?;
                    Some((i as f64, 100.0 * s.ua.mean, 100.0 * s.ua.std))
                })
                .collect(),
        })
        .collect();
    plot::lines(
        &out.join("ua_vs_snr.png"),
        "Unweighted accuracy under noise (test-pool noise)",
        ("condition", "UA % (mean ± std over folds)"),
        &ticks,
        0.0..100.0,
        &series,
    )?;
    if report.config.per_category {
        let noisy: Vec<f64> = snrs.iter().filter_map(|s| *s).collect();
        let columns: Vec<String> = noisy.iter().map(|s| snr_name(Some(*s))).collect();
        for d in &report.degradation {
            let values: Vec<Vec<Option<f64>>> = categories
                .iter()
                .map(|category| {
                    noisy
                        .iter()
                        .map(|&snr| {
                            report
                                .summary
                                .iter()
                                .find(|s| {
                                    s.model == d.model
                                        && s.category.as_deref() == Some(category)
                                        && s.snr_db == Some(snr)
                                })
                                .map(|s| s.ua.mean)
                        })
                        .collect()
                })
                .collect();
            let file = format!(
                "category_{}.png",
                d.model.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
            );
            plot::heatmap(
                &out.join(file),
                &format!("{}: UA % per noise category", d.model),
                ("SNR", "noise category"),
                &columns,
                categories,
                &values,
            )?;
        }
    }
    Ok(())
}
