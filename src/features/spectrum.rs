//! Short-time power spectrum and decibels, as librosa's `stft` (`center=True`,
//! `pad_mode="constant"`, periodic Hann window) and `power_to_db`.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

/// Number of frames librosa makes from `n_samples` (`1 + (len − frame) / hop`
/// after padding `frame / 2` on both sides when centred).
pub fn n_frames(n_samples: usize, frame_length: usize, hop_length: usize, center: bool) -> usize {
    let padded = if center {
        n_samples + 2 * (frame_length / 2)
    } else {
        n_samples
    };
    if padded < frame_length {
        0
    } else {
        1 + (padded - frame_length) / hop_length
    }
}

/// A planned STFT: window and FFT are made once and reused for every clip.
pub struct PowerSpectrum {
    n_fft: usize,
    hop_length: usize,
    center: bool,
    window: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl PowerSpectrum {
    /// `win_length ≤ n_fft`; a shorter window is zero-padded to `n_fft` in the
    /// middle, as librosa's `pad_center` does.
    pub fn new(n_fft: usize, hop_length: usize, win_length: usize, center: bool) -> Self {
        // Periodic Hann (scipy `get_window("hann", N, fftbins=True)`).
        let hann =
            (0..win_length).map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / win_length as f64).cos());
        let offset = (n_fft - win_length) / 2;
        let mut window = vec![0.0; n_fft];
        for (slot, w) in window[offset..].iter_mut().zip(hann) {
            *slot = w;
        }
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
        Self {
            n_fft,
            hop_length,
            center,
            window,
            fft,
        }
    }

    /// Number of FFT bins, `n_fft / 2 + 1`.
    pub fn n_bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// `|STFT|²` of `samples`, frame by frame: `[n_frames][n_bins]`, rounded to
    /// `f32` like librosa's complex64 STFT of float32 audio.
    ///
    /// # Shapes
    /// - samples: `[n_samples]`
    /// - output: `n_frames × n_bins`, frame-major
    pub fn power(&self, samples: &[f32]) -> Vec<f32> {
        let n_frames = n_frames(samples.len(), self.n_fft, self.hop_length, self.center);
        let pad = if self.center { self.n_fft / 2 } else { 0 };
        let n_bins = self.n_bins();
        let mut out = vec![0.0f32; n_frames * n_bins];
        let mut frame = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        for (t, row) in out.chunks_exact_mut(n_bins).enumerate() {
            // Frame t covers padded samples [t·hop, t·hop + n_fft); outside the
            // signal the padding is zeros.
            let start = (t * self.hop_length) as isize - pad as isize;
            for (i, slot) in frame.iter_mut().enumerate() {
                let at = start + i as isize;
                let sample = if at >= 0 && (at as usize) < samples.len() {
                    samples[at as usize]
                } else {
                    0.0
                };
                *slot = f64::from(sample) * self.window[i];
            }
            self.fft
                .process_with_scratch(&mut frame, &mut spectrum, &mut scratch)
                .expect("buffers come from this plan");
            for (power, bin) in row.iter_mut().zip(&spectrum) {
                let (re, im) = (bin.re as f32, bin.im as f32);
                *power = re * re + im * im;
            }
        }
        out
    }
}

/// `librosa.power_to_db(S, ref=1.0, amin, top_db)` in place: `10·log10(max(amin, S))`,
/// then nothing below `max − top_db` (the maximum over the whole array).
pub fn power_to_db(values: &mut [f32], amin: f32, top_db: Option<f32>) {
    for v in values.iter_mut() {
        *v = 10.0 * v.max(amin).log10();
    }
    if let Some(top_db) = top_db {
        let floor = values.iter().copied().fold(f32::NEG_INFINITY, f32::max) - top_db;
        for v in values.iter_mut() {
            *v = v.max(floor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_counts_match_librosa() {
        assert_eq!(n_frames(1, 2048, 512, true), 1);
        assert_eq!(n_frames(2048, 2048, 512, true), 5);
        assert_eq!(n_frames(2047, 2048, 512, false), 0);
        assert_eq!(n_frames(16_000, 2048, 512, true), 32);
    }

    #[test]
    fn a_bin_centred_tone_peaks_in_its_bin() {
        let spectrum = PowerSpectrum::new(64, 16, 64, true);
        let tone: Vec<f32> = (0..256)
            .map(|n| (2.0 * std::f32::consts::PI * 8.0 * n as f32 / 64.0).cos())
            .collect();
        let power = spectrum.power(&tone);
        let frame = &power[5 * spectrum.n_bins()..6 * spectrum.n_bins()];
        let peak = frame.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(peak, 8);
        // Hann window: a unit cosine gives |X|² = (N/4)² in its bin.
        assert!((frame[8] - 256.0).abs() < 1e-3, "{}", frame[8]);
    }

    #[test]
    fn db_floor_is_top_db_below_the_maximum() {
        let mut values = vec![1.0, 1e-3, 1e-12, 0.0];
        power_to_db(&mut values, 1e-10, Some(80.0));
        assert_eq!(values, vec![0.0, -30.0, -80.0, -80.0]);
        let mut silence = vec![0.0; 3];
        power_to_db(&mut silence, 1e-10, Some(80.0));
        assert_eq!(silence, vec![-100.0; 3]);
    }
}
