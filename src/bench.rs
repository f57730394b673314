//! Throughput of pipeline stages, behind `emofuse bench`. Inputs are decoded
//! before the clock starts, so each number is the stage alone, as the
//! reference scripts in `scripts/bench_*.py` measure their Python twins.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};

use crate::audio::{self, AudioError, Waveform};
use crate::data::{self, DataError, DatasetKind};
use crate::features::{FeatureConfig, FeatureExtractor};
use crate::infer::{InferError, Predictor};
use crate::model::temporal::{BackboneConfig, BackboneError, FrozenBackbone};
use crate::model::wav2vec2::{self, Wav2Vec2};
use crate::model::whisper::WhisperMode;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error(transparent)]
    Infer(#[from] InferError),
    #[error(transparent)]
    Backbone(#[from] BackboneError),
    #[error(transparent)]
    Wav2vec2(#[from] wav2vec2::LoadError),
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("no clips to measure")]
    NoClips,
}

impl std::fmt::Display for FeaturesReport {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            out,
            "{} on {} clips ({:.1} s of audio)",
            self.stage, self.single_thread.clips, self.single_thread.audio_s
        )?;
        for t in [&self.single_thread, &self.all_cores] {
            writeln!(
                out,
                "  {} thread(s): {:>8.1} clips/s  {:>7.3} ms/clip  {:>7.0}× real time",
                t.threads, t.clips_per_s, t.ms_per_clip, t.realtime_factor
            )?;
        }
        writeln!(out, "  scaling: {:.2}×", self.scaling)
    }
}

impl std::fmt::Display for ForwardReport {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            out,
            "encoder forward, {} ({} threads)",
            self.checkpoint.display(),
            self.threads
        )?;
        for mode in &self.modes {
            for t in &mode.times {
                writeln!(
                    out,
                    "  {:>10} {:>5.1} s clip: median {:>8.1} ms, best {:>8.1} ms ({} runs)",
                    mode.mode,
                    t.seconds_of_audio,
                    1e3 * t.median_s,
                    1e3 * t.best_s,
                    t.runs
                )?;
            }
        }
        if let Some(mib) = self.peak_rss_mib {
            writeln!(out, "  peak memory {mib:.0} MiB")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for EncodeReport {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            out,
            "hidden states of {} clips ({:.0} s of audio), batches of {} by length, {} ({} threads)",
            self.clips,
            self.audio_seconds,
            self.batch,
            self.checkpoint.display(),
            self.threads
        )?;
        writeln!(
            out,
            "  {:.1} s: {:.1} clips/s (decoding before the clock: {:.2} s)",
            self.seconds, self.clips_per_s, self.decode_seconds
        )
    }
}

impl std::fmt::Display for PredictReport {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            out,
            "predict ({} model), {} clips of {:.2} s on average, 1 thread: median {:.2} ms, p99 {:.2} ms, mean {:.2} ms per clip",
            self.model, self.clips, self.mean_clip_s, self.median_ms, self.p99_ms, self.mean_ms
        )
    }
}

impl std::fmt::Display for TrainStepReport {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            out,
            "spectral training step, batch {} × 42 × {} frames, {} threads: median {:.2} ms ({:.0} clips/s)",
            self.batch,
            self.frames,
            self.threads,
            1e3 * self.median_s,
            self.clips_per_s
        )
    }
}

/// Every clip of a corpus (the first `limit` in path order), decoded to
/// 16 kHz on all cores; `on_clip` once per clip.
pub fn decode_corpus(dir: &Path, limit: Option<usize>, on_clip: impl Fn() + Sync) -> Result<Vec<Waveform>, BenchError> {
    let dataset = data::load(dir, DatasetKind::Auto)?;
    let paths: Vec<_> = dataset
        .clips
        .iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|c| &c.path)
        .collect();
    let waveforms = paths
        .par_iter()
        .map(|path| {
            on_clip();
            audio::load(path)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(waveforms)
}

/// Feature extraction on one thread and on all cores.
#[derive(Serialize)]
pub struct FeaturesReport {
    pub stage: &'static str,
    pub config: FeatureConfig,
    pub single_thread: Throughput,
    pub all_cores: Throughput,
    /// All-cores throughput over single-thread throughput.
    pub scaling: f64,
}

impl FeaturesReport {
    /// Times the default features over `waveforms`, best of `passes`.
    pub fn measure(waveforms: &[Waveform], passes: usize) -> FeaturesReport {
        let config = FeatureConfig::default();
        let extractor = FeatureExtractor::new(config.clone()).expect("the default feature configuration is valid");
        let single_thread = features(&extractor, waveforms, 1, passes);
        let all_cores = features(&extractor, waveforms, rayon::current_num_threads(), passes);
        FeaturesReport {
            stage: "features (mfcc 40 + zcr + rms)",
            config,
            scaling: all_cores.clips_per_s / single_thread.clips_per_s,
            single_thread,
            all_cores,
        }
    }
}

/// One timed run of a stage over a set of clips.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub threads: usize,
    pub clips: usize,
    /// Total audio in the clips, in seconds.
    pub audio_s: f64,
    /// Best wall time of the timed passes, in seconds.
    pub seconds: f64,
    pub clips_per_s: f64,
    pub ms_per_clip: f64,
    /// Seconds of audio processed per second of wall time.
    pub realtime_factor: f64,
}

impl Throughput {
    fn new(threads: usize, waveforms: &[Waveform], seconds: f64) -> Self {
        let audio_s = waveforms.iter().map(Waveform::duration_s).sum();
        Self {
            threads,
            clips: waveforms.len(),
            audio_s,
            seconds,
            clips_per_s: waveforms.len() as f64 / seconds,
            ms_per_clip: 1e3 * seconds / waveforms.len() as f64,
            realtime_factor: audio_s / seconds,
        }
    }
}

/// Times MFCC + ZCR + RMS over `waveforms` on `threads` threads: one
/// untimed warm-up pass, then the best of `passes` timed passes.
pub fn features(extractor: &FeatureExtractor, waveforms: &[Waveform], threads: usize, passes: usize) -> Throughput {
    let extract = |w: &Waveform| {
        let features = extractor.extract(&w.samples, w.sample_rate);
        // Decoded clips are valid input; a failure here is a bug, not bad data.
        std::hint::black_box(features.expect("decoded 16 kHz audio has features"));
    };
    let pass = || {
        let start = Instant::now();
        if threads == 1 {
            waveforms.iter().for_each(extract);
        } else {
            waveforms.par_iter().for_each(extract);
        }
        start.elapsed().as_secs_f64()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool of the asked size can be made");
    let seconds = pool.install(|| {
        pass();
        (0..passes.max(1)).map(|_| pass()).fold(f64::INFINITY, f64::min)
    });
    Throughput::new(threads, waveforms, seconds)
}

/// Forward time of one clip length through an encoder.
#[derive(Debug, Clone, Serialize)]
pub struct ForwardTime {
    pub seconds_of_audio: f64,
    pub runs: usize,
    /// Median wall time per forward, in seconds.
    pub median_s: f64,
    pub best_s: f64,
}

/// Times `forward` on seeded white noise of each length in
/// `seconds_of_audio`: one untimed warm-up, then `runs` timed calls. `forward`
/// must return only once the result is computed (read it back).
pub fn forward_times(seconds_of_audio: &[f64], runs: usize, forward: impl Fn(&[f32])) -> Vec<ForwardTime> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    seconds_of_audio
        .iter()
        .map(|&seconds| {
            let n = (seconds * f64::from(crate::audio::SAMPLE_RATE)) as usize;
            let noise: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let run = || {
                let start = Instant::now();
                forward(&noise);
                start.elapsed().as_secs_f64()
            };
            run();
            let mut times: Vec<f64> = (0..runs.max(1)).map(|_| run()).collect();
            times.sort_by(f64::total_cmp);
            ForwardTime {
                seconds_of_audio: seconds,
                runs: times.len(),
                median_s: times[times.len() / 2],
                best_s: times[0],
            }
        })
        .collect()
}

/// Encoder forward times of a checkpoint, per mode.
#[derive(Serialize)]
pub struct ForwardReport {
    pub checkpoint: PathBuf,
    pub threads: usize,
    /// Per mode: `wav2vec2` (one), or Whisper's `trimmed` and `padded30s`.
    pub modes: Vec<ModeTimes>,
    pub peak_rss_mib: Option<f64>,
}

#[derive(Serialize)]
pub struct ModeTimes {
    pub mode: String,
    pub times: Vec<ForwardTime>,
}

impl ForwardReport {
    /// Times the encoder of `checkpoint` (a wav2vec 2.0 / HuBERT folder, or
    /// Whisper's, front end included, in both modes) on clips of each length.
    pub fn measure(
        checkpoint: &Path,
        seconds_of_audio: &[f64],
        runs: usize,
        device: &Device,
    ) -> Result<ForwardReport, BenchError> {
        let modes = match BackboneConfig::from_dir(checkpoint, false, WhisperMode::Trimmed)? {
            BackboneConfig::Whisper { path, encoder, .. } => [WhisperMode::Trimmed, WhisperMode::Padded30s]
                .into_iter()
                .map(|mode| {
                    let backbone = BackboneConfig::Whisper {
                        path: path.clone(),
                        encoder: encoder.clone(),
                        mode,
                        sha256: None,
                    };
                    let frozen = FrozenBackbone::load(&backbone, device)?;
                    let times = forward_times(seconds_of_audio, runs, |clip| {
                        let (states, _) = frozen.hidden_states(&[clip], device);
                        std::hint::black_box(states.last().expect("hidden states").clone().into_data());
                    });
                    Ok(ModeTimes {
                        mode: mode.as_str().to_owned(),
                        times,
                    })
                })
                .collect::<Result<Vec<_>, BenchError>>()?,
            _ => {
                let (model, _) = wav2vec2::load(checkpoint, device)?;
                vec![ModeTimes {
                    mode: "wav2vec2".into(),
                    times: wav2vec2_forward(&model, seconds_of_audio, runs, device),
                }]
            }
        };
        Ok(ForwardReport {
            checkpoint: checkpoint.to_owned(),
            threads: rayon::current_num_threads(),
            modes,
            peak_rss_mib: peak_rss_mib(),
        })
    }
}

/// [`forward_times`] of a wav2vec 2.0 / HuBERT encoder (raw waveform in).
pub fn wav2vec2_forward(model: &Wav2Vec2, seconds_of_audio: &[f64], runs: usize, device: &Device) -> Vec<ForwardTime> {
    forward_times(seconds_of_audio, runs, |noise| {
        let input = Tensor::<2>::from_data(TensorData::new(noise.to_vec(), [1, noise.len()]), device);
        let output = model.forward(input, &[noise.len()]);
        // Reading the result back waits for the computation to finish.
        std::hint::black_box(output.last_hidden_state.into_data());
    })
}

/// Every hidden state of real clips, computed as the training cache computes
/// them: clips sorted by length, `batch` at a time, read back from the device.
#[derive(Serialize)]
pub struct EncodeReport {
    pub checkpoint: PathBuf,
    pub clips: usize,
    pub audio_seconds: f64,
    pub batch: usize,
    pub threads: usize,
    /// Decoding the clips, before the timed encoding.
    pub decode_seconds: f64,
    pub seconds: f64,
    pub clips_per_s: f64,
    pub peak_rss_mib: Option<f64>,
}

impl EncodeReport {
    /// Times the encoder of `checkpoint` (Whisper in trimmed mode, or wav2vec
    /// 2.0 / HuBERT) on the first `limit` clips of `data`, after one untimed
    /// warm-up batch.
    pub fn measure(
        checkpoint: &Path,
        data: &Path,
        limit: usize,
        batch: usize,
        device: &Device,
    ) -> Result<EncodeReport, BenchError> {
        let frozen = FrozenBackbone::load(
            &BackboneConfig::from_dir(checkpoint, false, WhisperMode::Trimmed)?,
            device,
        )?;
        let start = Instant::now();
        let waveforms = decode_corpus(data, Some(limit), || {})?;
        let decode_seconds = start.elapsed().as_secs_f64();
        let mut order: Vec<usize> = (0..waveforms.len()).collect();
        order.sort_by_key(|&i| waveforms[i].samples.len());
        let batches: Vec<Vec<&[f32]>> = order
            .chunks(batch.max(1))
            .map(|chunk| chunk.iter().map(|&i| waveforms[i].samples.as_slice()).collect())
            .collect();
        let encode = |clips: &[&[f32]]| {
            let (states, _) = frozen.hidden_states(clips, device);
            for layer in states {
                std::hint::black_box(layer.into_data());
            }
        };
        encode(batches.first().ok_or(BenchError::NoClips)?);
        let start = Instant::now();
        batches.iter().for_each(|clips| encode(clips));
        let seconds = start.elapsed().as_secs_f64();
        Ok(EncodeReport {
            checkpoint: checkpoint.to_owned(),
            clips: waveforms.len(),
            audio_seconds: waveforms.iter().map(|w| w.samples.len() as f64 / 16_000.0).sum(),
            batch: batch.max(1),
            threads: rayon::current_num_threads(),
            decode_seconds,
            seconds,
            clips_per_s: waveforms.len() as f64 / seconds,
            peak_rss_mib: peak_rss_mib(),
        })
    }
}

/// End-to-end prediction times per clip.
#[derive(Serialize)]
pub struct PredictReport {
    pub model: String,
    pub clips: usize,
    pub mean_clip_s: f64,
    pub threads: usize,
    /// Per clip, from the file's bytes in memory to the probabilities.
    pub median_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

impl PredictReport {
    /// Times `predictor` on the first `limit` clips of the corpus `data` on
    /// one thread, each from its file's bytes in memory (read first) to the
    /// probabilities; one untimed warm-up clip.
    pub fn measure(
        predictor: &Predictor,
        model: String,
        data: &Path,
        limit: usize,
    ) -> Result<PredictReport, BenchError> {
        let dataset = data::load(data, DatasetKind::Auto)?;
        let files: Vec<(String, Vec<u8>)> = dataset
            .clips
            .iter()
            .take(limit)
            .map(|c| {
                let bytes = std::fs::read(&c.path).map_err(|source| BenchError::Read {
                    path: c.path.clone(),
                    source,
                })?;
                Ok((c.path.display().to_string(), bytes))
            })
            .collect::<Result<_, BenchError>>()?;
        let first = files.first().ok_or(BenchError::NoClips)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a thread pool of one thread can be made");
        let (mut times, audio_s) = pool.install(|| -> Result<(Vec<f64>, f64), BenchError> {
            let once = |(name, bytes): &(String, Vec<u8>)| -> Result<(f64, f64), BenchError> {
                let start = Instant::now();
                let waveform = audio::load_bytes(bytes, name, &Default::default())?;
                std::hint::black_box(predictor.predict(&waveform, name)?);
                Ok((start.elapsed().as_secs_f64(), waveform.duration_s()))
            };
            once(first)?;
            let mut times = Vec::with_capacity(files.len());
            let mut audio_s = 0.0;
            for file in &files {
                let (t, d) = once(file)?;
                times.push(t);
                audio_s += d;
            }
            Ok((times, audio_s))
        })?;
        times.sort_by(f64::total_cmp);
        Ok(PredictReport {
            model,
            clips: times.len(),
            mean_clip_s: audio_s / times.len() as f64,
            threads: 1,
            median_ms: 1e3 * times[times.len() / 2],
            p99_ms: 1e3 * times[(times.len() * 99 / 100).min(times.len() - 1)],
            mean_ms: 1e3 * times.iter().sum::<f64>() / times.len() as f64,
        })
    }
}

/// Training-step times of the spectral model.
#[derive(Serialize)]
pub struct TrainStepReport {
    pub batch: usize,
    pub frames: usize,
    pub threads: usize,
    pub median_s: f64,
    pub best_s: f64,
    pub steps: usize,
    pub clips_per_s: f64,
}

/// Times training steps of the spectral model (the default model's
/// architecture: CNN, attentive pooling, classifier) on a fixed random batch
/// `[batch, 42, frames]` on `device`: forward, cross-entropy, backward, AdamW
/// with per-parameter gradient clipping. One warm-up step, then `steps` timed.
pub fn spectral_train_steps(batch: usize, frames: usize, steps: usize, device: &Device) -> TrainStepReport {
    use crate::model::fusion::{EmotionModelConfig, ModelInput, ModelKind};
    use burn::optim::{AdamWConfig, GradientsParams};

    let config: EmotionModelConfig = Predictor::builtin(device)
        .expect("the built-in model loads")
        .config()
        .model
        .clone();
    let device = device.clone().autodiff();
    device.seed(0);
    assert_eq!(
        config.kind,
        ModelKind::Spectral,
        "the default model is the spectral stream"
    );
    let mut model = config.init(None, &device);
    let mut optimizer = AdamWConfig::new()
        .with_weight_decay(0.01)
        .with_grad_clipping(Some(burn::grad_clipping::GradientClippingConfig::Norm(1.0)))
        .init();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let values: Vec<f32> = (0..batch * 42 * frames).map(|_| rng.random_range(-1.0..1.0)).collect();
    let labels: Vec<i64> = (0..batch).map(|i| (i % config.n_classes) as i64).collect();
    let mut step = || {
        let start = Instant::now();
        let features = Tensor::<3>::from_data(TensorData::new(values.clone(), [batch, 42, frames]), &device);
        let input = ModelInput {
            features: Some((features, vec![frames; batch])),
            temporal: None,
        };
        let logits = model.forward(input).logits;
        let targets = Tensor::<1, burn::tensor::Int>::from_data(TensorData::new(labels.clone(), [batch]), &device);
        let log_probs = burn::tensor::activation::log_softmax(logits, 1);
        let loss = log_probs.gather(1, targets.unsqueeze_dim::<2>(1)).mean().neg();
        let gradients = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(1e-3, model.clone(), gradients);
        start.elapsed().as_secs_f64()
    };
    step();
    let mut times: Vec<f64> = (0..steps.max(1)).map(|_| step()).collect();
    times.sort_by(f64::total_cmp);
    let median_s = times[times.len() / 2];
    TrainStepReport {
        batch,
        frames,
        threads: rayon::current_num_threads(),
        median_s,
        best_s: times[0],
        steps: times.len(),
        clips_per_s: batch as f64 / median_s,
    }
}

/// The process' peak resident memory so far (Linux `VmHWM`), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
