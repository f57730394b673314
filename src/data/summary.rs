//! What is in a corpus: clips, speakers, labels, durations, formats, problems.

use std::collections::BTreeMap;
use std::fmt;

use rayon::prelude::*;
use serde::Serialize;

use super::{Clip, Corpus, Dataset, Problem, joined};
use crate::audio::{self, AudioInfo};

/// A corpus overview; `clips` counts only the files whose header could be read.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub dataset: Corpus,
    pub root: String,
    pub clips: usize,
    /// Number of distinct speakers (clips without a speaker are not counted).
    pub speakers: usize,
    pub labels: BTreeMap<String, usize>,
    pub per_speaker: BTreeMap<String, usize>,
    pub duration_s: DurationStats,
    pub sample_rates: BTreeMap<u32, usize>,
    pub channels: BTreeMap<usize, usize>,
    pub containers: BTreeMap<String, usize>,
    pub problems: Vec<Problem>,
}

/// Durations in seconds, from the file headers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DurationStats {
    pub total: f64,
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

/// The summary as a table for people.
impl fmt::Display for Summary {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.duration_s;
        writeln!(out, "dataset       {} ({})", self.dataset.as_str(), self.root)?;
        writeln!(out, "clips         {}", self.clips)?;
        writeln!(out, "speakers      {}", self.speakers)?;
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
            joined(&self.sample_rates, |rate| format!("{rate} Hz"))
        )?;
        writeln!(out, "channels      {}", joined(&self.channels, |c| c.to_string()))?;
        writeln!(out, "formats       {}", joined(&self.containers, |c| c.clone()))?;
        writeln!(out, "labels")?;
        for (label, count) in &self.labels {
            writeln!(out, "  {label:<12} {count:>6}")?;
        }
        writeln!(out, "clips per speaker")?;
        for (speaker, count) in &self.per_speaker {
            writeln!(out, "  {speaker:<16} {count:>6}")?;
        }
        writeln!(out, "problems      {}", self.problems.len())
    }
}

/// Reads every clip's header (in parallel) and summarises the corpus.
/// `on_clip` is called once per clip, for progress reporting.
pub fn summarise(dataset: &Dataset, on_clip: impl Fn() + Sync) -> Summary {
    let probed: Vec<(&Clip, Result<AudioInfo, String>)> = dataset
        .clips
        .par_iter()
        .map(|clip| {
            let info = audio::probe(&clip.path)
                .map_err(|err| err.to_string())
                .and_then(|info| {
                    info.duration_s()
                        .map(|_| info)
                        .ok_or_else(|| "header does not state the length".to_owned())
                });
            on_clip();
            (clip, info)
        })
        .collect();

    let mut summary = Summary {
        dataset: dataset.corpus,
        root: dataset.root.display().to_string(),
        clips: 0,
        speakers: 0,
        labels: BTreeMap::new(),
        per_speaker: BTreeMap::new(),
        duration_s: DurationStats::default(),
        sample_rates: BTreeMap::new(),
        channels: BTreeMap::new(),
        containers: BTreeMap::new(),
        problems: dataset.problems.clone(),
    };
    let mut durations = Vec::with_capacity(probed.len());
    for (clip, info) in probed {
        let info = match info {
            Ok(info) => info,
            Err(reason) => {
                // The audio error already names the file; keep only its reason.
                let prefix = format!("{}: ", clip.path.display());
                let reason = reason.strip_prefix(&prefix).map(str::to_owned).unwrap_or(reason);
                summary.problems.push(Problem {
                    path: clip.path.clone(),
                    reason,
                });
                continue;
            }
        };
        summary.clips += 1;
        *summary.labels.entry(clip.label.clone()).or_insert(0) += 1;
        if let Some(speaker) = &clip.speaker {
            *summary.per_speaker.entry(speaker.clone()).or_insert(0) += 1;
        }
        *summary.sample_rates.entry(info.sample_rate).or_insert(0) += 1;
        *summary.channels.entry(info.channels).or_insert(0) += 1;
        let container = serde_json::to_value(info.container).expect("a unit enum serialises");
        *summary
            .containers
            .entry(container.as_str().unwrap_or("?").to_owned())
            .or_insert(0) += 1;
        durations.push(info.duration_s().expect("filtered above"));
    }
    summary.speakers = summary.per_speaker.len();
    summary.problems.sort_by(|a, b| a.path.cmp(&b.path));
    summary.duration_s = duration_stats(durations);
    summary
}

fn duration_stats(mut durations: Vec<f64>) -> DurationStats {
    if durations.is_empty() {
        return DurationStats::default();
    }
    durations.sort_by(f64::total_cmp);
    let n = durations.len();
    let median = if n % 2 == 1 {
        durations[n / 2]
    } else {
        (durations[n / 2 - 1] + durations[n / 2]) / 2.0
    };
    DurationStats {
        total: durations.iter().sum(),
        min: durations[0],
        median,
        max: durations[n - 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(duration_stats(vec![3.0, 1.0, 2.0]).median, 2.0);
        let stats = duration_stats(vec![4.0, 1.0, 2.0, 3.0]);
        assert_eq!((stats.median, stats.min, stats.max, stats.total), (2.5, 1.0, 4.0, 10.0));
    }
}
