//! `emofuse predict` (the emotion of audio files) and `emofuse eval` (a model
//! scored on a corpus or one of its folds).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use rayon::prelude::*;
use serde::Serialize;

use emofuse::audio;
use emofuse::data::{self, DatasetKind, Problem};
use emofuse::eval::{Metrics, argmax_rows};
use emofuse::infer::{Prediction, Predictor, Timeline};
use emofuse::{persist, plot};

use super::{ProtocolName, print_json, progress_bar, report_problems};

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Audio files (any format emofuse reads).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Model directory [default: the model built into emofuse].
    #[arg(long)]
    model: Option<PathBuf>,
    /// One JSON object per file and line.
    #[arg(long)]
    json: bool,
    /// Also predict windows of this many seconds along each file (a timeline).
    #[arg(long)]
    window: Option<f64>,
    /// Seconds between timeline windows.
    #[arg(long, default_value_t = 1.0, requires = "window")]
    hop: f64,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model directory [default: the model built into emofuse].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Corpus folder or manifest.
    #[arg(long)]
    data: PathBuf,
    #[arg(long, value_enum, default_value_t = DatasetKind::Auto)]
    dataset: DatasetKind,
    /// Score only the test clips of this fold (from 1) of --protocol or --fold-file.
    #[arg(long)]
    fold: Option<usize>,
    #[arg(long, value_enum, requires = "fold")]
    protocol: Option<ProtocolName>,
    #[arg(long, requires = "fold", conflicts_with = "protocol")]
    fold_file: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    k: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write metrics.json, metrics.csv, predictions.csv and confusion.png here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the metrics as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Loads `--model`, or the built-in model.
pub fn load_predictor(model: Option<&Path>) -> Result<Predictor> {
    match model {
        Some(dir) => Predictor::load(dir).with_context(|| format!("cannot load the model {}", dir.display())),
        None => Predictor::builtin().context("cannot load the built-in model"),
    }
}

#[derive(Serialize)]
struct FilePrediction<'a> {
    path: &'a Path,
    duration_s: f64,
    #[serde(flatten)]
    prediction: Prediction,
    labels: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<Timeline>,
}

pub fn predict(args: &PredictArgs) -> Result<ExitCode> {
    let predictor = load_predictor(args.model.as_deref())?;
    let mut problems = Vec::new();
    let mut out = std::io::stdout().lock();
    if !args.json {
        let header: String = predictor.labels().iter().map(|l| format!("{l:>9}")).collect();
        writeln!(out, "{:<40} {:<9} {:>6} {header}", "file", "emotion", "conf")?;
    }
    for path in &args.files {
        let name = path.display().to_string();
        let result = audio::load(path).map_err(|e| e.to_string()).and_then(|waveform| {
            let prediction = predictor.predict(&waveform, &name).map_err(|e| e.to_string())?;
            let timeline = args
                .window
                .map(|window| predictor.timeline(&waveform, &name, window, args.hop))
                .transpose()
                .map_err(|e| e.to_string())?;
            Ok((waveform.duration_s(), prediction, timeline))
        });
        let (duration_s, prediction, timeline) = match result {
            Ok(found) => found,
            Err(reason) => {
                problems.push(Problem {
                    path: path.clone(),
                    reason,
                });
                continue;
            }
        };
        if args.json {
            let record = FilePrediction {
                path,
                duration_s,
                prediction,
                labels: predictor.labels(),
                timeline,
            };
            serde_json::to_writer(&mut out, &record)?;
            writeln!(out)?;
        } else {
            let probabilities: String = prediction.probabilities.iter().map(|p| format!("{:>9.3}", p)).collect();
            writeln!(
                out,
                "{:<40} {:<9} {:>6.3} {probabilities}",
                shorten(&name, 40),
                prediction.label,
                prediction.confidence
            )?;
            for window in timeline.iter().flat_map(|t| &t.windows) {
                writeln!(
                    out,
                    "  {:>6.2}–{:<6.2} s {:<9} {:>6.3}",
                    window.start_s, window.end_s, window.prediction.label, window.prediction.confidence
                )?;
            }
        }
    }
    drop(out);
    Ok(report_problems(&problems))
}

/// The end of a long path, which is the part that tells files apart.
fn shorten(name: &str, width: usize) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= width {
        name.to_owned()
    } else {
        format!("…{}", chars[chars.len() - (width - 1)..].iter().collect::<String>())
    }
}

#[derive(Serialize)]
struct EvalReport<'a> {
    model: String,
    data: &'a Path,
    fold: Option<String>,
    labels: &'a [String],
    metrics: Metrics,
    /// Clips whose label the model does not have (not scored).
    unscored_clips: usize,
}

pub fn eval(args: &EvalArgs) -> Result<ExitCode> {
    let predictor = load_predictor(args.model.as_deref())?;
    let dataset = data::load(&args.data, args.dataset)
        .with_context(|| format!("cannot read the corpus {}", args.data.display()))?;
    let mut problems = dataset.problems.clone();
    let clips: Vec<&data::Clip> = match (args.fold, &args.protocol, &args.fold_file) {
        (Some(k), Some(protocol), _) => {
            let protocol = match protocol {
                ProtocolName::Emobox => data::folds::Protocol::Emobox,
                ProtocolName::Kfold => data::folds::Protocol::Kfold { k: args.k },
                ProtocolName::Loso => data::folds::Protocol::Loso,
            };
            let options = data::folds::FoldOptions {
                protocol,
                seed: args.seed,
                allow_speaker_overlap: false,
            };
            let folds =
                data::folds::make_folds(&dataset.clips, dataset.corpus, &options).context("cannot make folds")?;
            let fold = folds
                .get(k.wrapping_sub(1))
                .with_context(|| format!("--fold {k}: there are {} folds", folds.len()))?;
            fold.test.iter().map(|&i| &dataset.clips[i]).collect()
        }
        (Some(k), None, Some(file)) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            let json: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{}: not JSON", file.display()))?;
            let test: std::collections::HashSet<&str> = json["folds"][k.wrapping_sub(1)]["test"]
                .as_array()
                .with_context(|| format!("{}: no fold {k} with a \"test\" list", file.display()))?
                .iter()
                .filter_map(|p| p.as_str())
                .collect();
            dataset
                .clips
                .iter()
                .filter(|c| test.contains(c.path.to_string_lossy().as_ref()))
                .collect()
        }
        _ => dataset.clips.iter().collect(),
    };
    let labels = predictor.labels().to_vec();
    let (known, unknown): (Vec<&data::Clip>, Vec<&data::Clip>) =
        clips.into_iter().partition(|c| labels.contains(&c.label));
    let progress = progress_bar(known.len() as u64, "decoding");
    let examples: Vec<_> = known
        .par_iter()
        .map(|clip| {
            progress.inc(1);
            let name = clip.path.display().to_string();
            audio::load(&clip.path)
                .map_err(|e| e.to_string())
                .and_then(|w| predictor.example(&w, &name).map_err(|e| e.to_string()))
                .map(|mut example| {
                    example.label = labels.iter().position(|l| *l == clip.label).expect("known label");
                    example
                })
        })
        .collect();
    progress.finish_and_clear();
    let mut scored_clips = Vec::new();
    let mut scored = Vec::new();
    for (clip, example) in known.iter().zip(examples) {
        match example {
            Ok(example) => {
                scored_clips.push(*clip);
                scored.push(example);
            }
            Err(reason) => problems.push(Problem {
                path: clip.path.clone(),
                reason,
            }),
        }
    }
    anyhow::ensure!(
        !scored.is_empty(),
        "no clip of {} has a label the model knows ({})",
        args.data.display(),
        labels.join(", ")
    );
    let probabilities = predictor.probabilities(&scored);
    let truth: Vec<usize> = scored.iter().map(|e| e.label).collect();
    let predicted = argmax_rows(&probabilities, labels.len());
    let metrics = Metrics::compute(&truth, &predicted, labels.len());
    let report = EvalReport {
        model: args
            .model
            .as_ref()
            .map_or("(built-in)".into(), |p| p.display().to_string()),
        data: &args.data,
        fold: args.fold.map(|k| format!("fold {k}")),
        labels: &labels,
        metrics,
        unscored_clips: unknown.len(),
    };
    if let Some(out) = &args.out {
        write_eval_files(out, &report, &scored_clips, &truth, &predicted, &probabilities)?;
    }
    if args.json {
        print_json(&report)?;
    } else {
        let m = &report.metrics;
        println!(
            "{} clips: UA {:.2}  WA {:.2}  macro-F1 {:.2}",
            m.clips,
            100.0 * m.ua,
            100.0 * m.wa,
            100.0 * m.macro_f1
        );
        for (label, recall) in labels.iter().zip(&m.per_class_recall) {
            if let Some(recall) = recall {
                println!("  {label:<10} recall {:.2}", 100.0 * recall);
            }
        }
        if report.unscored_clips > 0 {
            println!(
                "{} clips have labels the model does not know and were not scored",
                report.unscored_clips
            );
        }
    }
    Ok(report_problems(&problems))
}

fn write_eval_files(
    out: &Path,
    report: &EvalReport,
    clips: &[&data::Clip],
    truth: &[usize],
    predicted: &[usize],
    probabilities: &[f32],
) -> Result<()> {
    let write = |name: &str, bytes: &[u8]| {
        persist::write_atomic(&out.join(name), bytes)
            .with_context(|| format!("cannot write {}", out.join(name).display()))
    };
    write("metrics.json", &serde_json::to_vec_pretty(report)?)?;
    let labels = report.labels;
    let m = &report.metrics;
    let mut csv = String::from("metric,value\n");
    csv += &format!(
        "ua,{:.4}\nwa,{:.4}\nmacro_f1,{:.4}\nclips,{}\n",
        m.ua, m.wa, m.macro_f1, m.clips
    );
    for (label, recall) in labels.iter().zip(&m.per_class_recall) {
        if let Some(recall) = recall {
            csv += &format!("recall_{label},{recall:.4}\n");
        }
    }
    write("metrics.csv", csv.as_bytes())?;
    let mut rows = format!(
        "path,true,predicted,{}\n",
        labels.iter().map(|l| format!("p_{l}")).collect::<Vec<_>>().join(",")
    );
    for (i, clip) in clips.iter().enumerate() {
        let p: Vec<String> = probabilities[i * labels.len()..(i + 1) * labels.len()]
            .iter()
            .map(|v| format!("{v:.5}"))
            .collect();
        rows += &format!(
            "{},{},{},{}\n",
            clip.path.display(),
            labels[truth[i]],
            labels[predicted[i]],
            p.join(",")
        );
    }
    write("predictions.csv", rows.as_bytes())?;
    let title = format!(
        "UA {:.1} %  WA {:.1} %  ({} clips)",
        100.0 * m.ua,
        100.0 * m.wa,
        m.clips
    );
    plot::confusion_matrix(&out.join("confusion.png"), labels, &m.confusion, &title)?;
    Ok(())
}
