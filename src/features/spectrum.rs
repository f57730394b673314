//! Short-time power spectrum and decibels, as librosa's `stft` (`center=True`,
//! `pad_mode="constant"`, periodic Hann window) and `power_to_db`.

use std::sync::Arc;

use multiversion::multiversion;
use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

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

/// What lies beyond the signal's ends when frames are centred (`center=True`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadMode {
    /// Zeros: librosa's `stft` default.
    Constant,
    /// The signal mirrored at its ends (without repeating the edge sample):
    /// `torch.stft`'s default, which Whisper's front end uses.
    Reflect,
}

/// Frames per block of [`PowerSpectrum::power_blocks`]: one AVX2 vector of f32.
pub const BLOCK: usize = 8;

/// A planned STFT: window and FFT are made once and reused for every clip.
///
/// Frames are real, so two of them go through one complex FFT (frame `t` as
/// the real part, `t + 1` as the imaginary part) and are separated by the
/// conjugate symmetry of real spectra. That is half the FFTs of one complex
/// FFT per frame, and cheaper than realfft's per-frame post-processing,
/// which the compiler cannot vectorise.
pub struct PowerSpectrum {
    n_fft: usize,
    hop_length: usize,
    center: bool,
    pad_mode: PadMode,
    window: Vec<f32>,
    fft: Arc<dyn Fft<f32>>,
}

impl PowerSpectrum {
    /// `win_length ≤ n_fft`; a shorter window is zero-padded to `n_fft` in the
    /// middle, as librosa's `pad_center` does.
    pub fn new(n_fft: usize, hop_length: usize, win_length: usize, center: bool) -> Self {
        Self::with_pad_mode(n_fft, hop_length, win_length, center, PadMode::Constant)
    }

    /// [`PowerSpectrum::new`] with the given padding of centred frames.
    pub fn with_pad_mode(n_fft: usize, hop_length: usize, win_length: usize, center: bool, pad_mode: PadMode) -> Self {
        // Periodic Hann (scipy `get_window("hann", N, fftbins=True)`).
        let hann =
            (0..win_length).map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / win_length as f64).cos());
        let offset = (n_fft - win_length) / 2;
        let mut window = vec![0.0f32; n_fft];
        for (slot, w) in window[offset..].iter_mut().zip(hann) {
            *slot = w as f32;
        }
        // f32 like numpy 2's float32 FFT path: librosa's own output differs
        // from this by < 1e-3 dB (tests/features.rs), at half the cost of f64.
        let fft = FftPlanner::<f32>::new().plan_fft_forward(n_fft);
        Self {
            n_fft,
            hop_length,
            center,
            pad_mode,
            window,
            fft,
        }
    }

    /// Number of FFT bins, `n_fft / 2 + 1`.
    pub fn n_bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// `|STFT|²` of `samples`, handed to `each` in blocks of [`BLOCK`]
    /// consecutive frames as `(first frame, frames in the block, block)`.
    ///
    /// A block is bin-major, `[n_bins][BLOCK]`: the mel filters then weight
    /// one bin of eight frames per vector operation, and the block (32 KB at
    /// n_fft 2048) stays in the L1 cache. Lanes past the last frame are zero.
    pub fn power_blocks(&self, samples: &[f32], mut each: impl FnMut(usize, usize, &[[f32; BLOCK]])) {
        let n_frames = n_frames(samples.len(), self.n_fft, self.hop_length, self.center);
        let n_bins = self.n_bins();
        let mut block = vec![[0.0f32; BLOCK]; n_bins];
        let mut buffer = vec![Complex32::default(); self.n_fft];
        let mut scratch = vec![Complex32::default(); self.fft.get_inplace_scratch_len()];
        // Frames reaching into the padding are copied here; the others are slices of `samples`.
        let (mut edge_first, mut edge_second) = (vec![0.0f32; self.n_fft], vec![0.0f32; self.n_fft]);
        for first in (0..n_frames).step_by(BLOCK) {
            let in_block = BLOCK.min(n_frames - first);
            for lane in (0..in_block).step_by(2) {
                let t = first + lane;
                let frame_one = self.frame(samples, t, &mut edge_first);
                // An odd frame count pairs the last frame with silence.
                let frame_two = if t + 1 < n_frames {
                    self.frame(samples, t + 1, &mut edge_second)
                } else {
                    edge_second.fill(0.0);
                    &edge_second
                };
                pack_windowed(frame_one, frame_two, &self.window, &mut buffer);
                self.fft.process_with_scratch(&mut buffer, &mut scratch);
                separate_powers(&buffer, &mut block, lane);
            }
            for bin in &mut block {
                bin[in_block.next_multiple_of(2)..].fill(0.0);
            }
            each(first, in_block, &block);
        }
    }

    /// Frame `t` of the centred signal: a slice of `samples`, or, where it
    /// reaches into the zero padding, a copy in `edge`.
    fn frame<'a>(&self, samples: &'a [f32], t: usize, edge: &'a mut [f32]) -> &'a [f32] {
        let pad = if self.center { self.n_fft / 2 } else { 0 };
        let start = (t * self.hop_length) as isize - pad as isize;
        let end = start + self.n_fft as isize;
        if start >= 0 && end as usize <= samples.len() {
            return &samples[start as usize..end as usize];
        }
        let last = samples.len() as isize - 1;
        for (i, slot) in edge.iter_mut().enumerate() {
            let at = start + i as isize;
            *slot = match self.pad_mode {
                _ if (0..=last).contains(&at) => samples[at as usize],
                PadMode::Constant => 0.0,
                // Mirror about the first and last sample; folding again keeps a
                // clip shorter than the padding in range.
                PadMode::Reflect if last == 0 => samples[0],
                PadMode::Reflect => {
                    let period = 2 * last;
                    let folded = at.rem_euclid(period);
                    samples[if folded > last { period - folded } else { folded } as usize]
                }
            };
        }
        edge
    }
}

/// `z = (a + i·b) · window`: two real frames as one complex FFT input.
#[multiversion(targets("x86_64+avx2", "x86_64+avx512f", "aarch64+neon"))]
fn pack_windowed(a: &[f32], b: &[f32], window: &[f32], z: &mut [Complex32]) {
    for (((z, &a), &b), &w) in z.iter_mut().zip(a).zip(b).zip(window) {
        *z = Complex32::new(a * w, b * w);
    }
}

/// Power spectra of the two real frames packed into one complex FFT `z`
/// (`N` points), into lanes `lane` and `lane + 1` of `block`: with
/// `w = conj(z[(N − k) mod N])`, frame one is `(z[k] + w) / 2` and frame two
/// `(z[k] − w) / 2i`.
#[multiversion(targets("x86_64+avx2", "x86_64+avx512f", "aarch64+neon"))]
fn separate_powers(z: &[Complex32], block: &mut [[f32; BLOCK]], lane: usize) {
    let n = z.len();
    // k = 0 mirrors onto itself: the frames are the real and imaginary parts.
    (block[0][lane], block[0][lane + 1]) = (z[0].re * z[0].re, z[0].im * z[0].im);
    let mirrored = z[n + 1 - block.len()..].iter().rev();
    for ((a, b), bin) in z[1..].iter().zip(mirrored).zip(&mut block[1..]) {
        let (sum_re, diff_im) = (a.re + b.re, a.im - b.im);
        let (diff_re, sum_im) = (a.re - b.re, a.im + b.im);
        bin[lane] = 0.25 * (sum_re * sum_re + diff_im * diff_im);
        bin[lane + 1] = 0.25 * (diff_re * diff_re + sum_im * sum_im);
    }
}

/// `librosa.power_to_db(S, ref=1.0, amin, top_db)` in place: `10·log10(max(amin, S))`,
/// then nothing below `max − top_db` (the maximum over the whole array).
///
/// The logarithm is `wide`'s eight-lane `ln` (cephes, ~1 ulp): the scalar
/// `log10` was a tenth of all feature time.
pub fn power_to_db(values: &mut [f32], amin: f32, top_db: Option<f32>) {
    use wide::f32x8;
    const DB_PER_NEPER: f32 = 10.0 / std::f32::consts::LN_10;
    let mut max = f32x8::splat(f32::NEG_INFINITY);
    for chunk in values.chunks_mut(8) {
        let mut lanes = [amin; 8];
        lanes[..chunk.len()].copy_from_slice(chunk);
        let db = f32x8::from(lanes).max(f32x8::splat(amin)).ln() * DB_PER_NEPER;
        max = max.max(db);
        chunk.copy_from_slice(&db.to_array()[..chunk.len()]);
    }
    if let Some(top_db) = top_db {
        let floor = max.to_array().into_iter().fold(f32::NEG_INFINITY, f32::max) - top_db;
        clamp_below(values, floor);
    }
}

#[multiversion(targets("x86_64+avx2", "x86_64+avx512f", "aarch64+neon"))]
fn clamp_below(values: &mut [f32], floor: f32) {
    for v in values {
        *v = if *v < floor { floor } else { *v };
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
        let mut frame = Vec::new();
        spectrum.power_blocks(&tone, |first, _, block| {
            if first == 0 {
                frame = block.iter().map(|bin| bin[5]).collect();
            }
        });
        let peak = frame.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(peak, 8);
        // Hann window: a unit cosine gives |X|² = (N/4)² in its bin.
        assert!((frame[8] - 256.0).abs() < 1e-3, "{}", frame[8]);
    }

    #[test]
    fn db_floor_is_top_db_below_the_maximum() {
        let close = |got: &[f32], want: &[f32]| got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-4);
        let mut values = vec![1.0, 1e-3, 1e-12, 0.0, 2.0, 3.0, 4.0, 5.0, 10.0];
        power_to_db(&mut values, 1e-10, Some(80.0));
        let want = [0.0, -30.0, -70.0, -70.0, 3.0103, 4.7712, 6.0206, 6.9897, 10.0];
        assert!(close(&values, &want), "{values:?}");
        let mut silence = vec![0.0; 3];
        power_to_db(&mut silence, 1e-10, Some(80.0));
        assert!(close(&silence, &[-100.0; 3]), "{silence:?}");
    }
}
