//! Throughput of pipeline stages, behind `emofuse bench`. Inputs are decoded
//! before the clock starts, so each number is the stage alone, as the
//! reference scripts in `scripts/bench_*.py` measure their Python twins.

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};

use crate::audio::Waveform;
use crate::features::FeatureExtractor;
use crate::model::wav2vec2::Wav2Vec2;

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

/// [`forward_times`] of a wav2vec 2.0 / HuBERT encoder (raw waveform in).
pub fn wav2vec2_forward(model: &Wav2Vec2, seconds_of_audio: &[f64], runs: usize, device: &Device) -> Vec<ForwardTime> {
    forward_times(seconds_of_audio, runs, |noise| {
        let input = Tensor::<2>::from_data(TensorData::new(noise.to_vec(), [1, noise.len()]), device);
        let output = model.forward(input, &[noise.len()]);
        // Reading the result back waits for the computation to finish.
        std::hint::black_box(output.last_hidden_state.into_data());
    })
}

/// Times training steps of the spectral model (the default model's
/// architecture: CNN, attentive pooling, classifier) on a fixed random batch
/// `[batch, 42, frames]`: forward, cross-entropy, backward, AdamW with
/// per-parameter gradient clipping. One warm-up step, then `steps` timed.
pub fn spectral_train_steps(batch: usize, frames: usize, steps: usize) -> ForwardTime {
    use crate::model::fusion::{EmotionModelConfig, ModelInput, ModelKind};
    use burn::optim::{AdamWConfig, GradientsParams};

    let device = Device::flex().autodiff();
    device.seed(0);
    let config: EmotionModelConfig = crate::infer::Predictor::builtin()
        .expect("the built-in model loads")
        .config()
        .model
        .clone();
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
    ForwardTime {
        seconds_of_audio: frames as f64 * 512.0 / 16_000.0,
        runs: times.len(),
        median_s: times[times.len() / 2],
        best_s: times[0],
    }
}

/// The process' peak resident memory so far (Linux `VmHWM`), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
