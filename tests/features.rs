//! Parity with librosa 0.11 on the golden files of `scripts/golden_features.py`.

use std::path::{Path, PathBuf};

use emofuse::audio;
use emofuse::features::{FeatureConfig, FeatureExtractor};
use serde_json::Value;

use crate::util::shared_data;

/// MFCC and log-mel: max absolute error, in dB-scale units.
const DB_TOLERANCE: f32 = 1e-3;
/// RMS: max relative error.
const RMS_TOLERANCE: f32 = 1e-5;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/features")
}

fn read_f32(entry: &Value) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(golden_dir().join(entry["file"].as_str().unwrap())).unwrap();
    let values = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let shape = entry["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    (shape, values)
}

fn max_abs_error(ours: &[f32], golden: &[f32]) -> f32 {
    assert_eq!(ours.len(), golden.len());
    ours.iter().zip(golden).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

#[test]
fn features_match_librosa() {
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(golden_dir().join("index.json")).unwrap()).unwrap();
    let params = &index["params"];
    let config = FeatureConfig::default();
    assert_eq!(params["n_fft"], config.n_fft);
    assert_eq!(params["hop_length"], config.hop_length);
    assert_eq!(params["n_mels"], config.n_mels);
    assert_eq!(params["n_mfcc"], config.n_mfcc);
    let extractor = FeatureExtractor::new(config.clone()).unwrap();
    let cases = index["cases"].as_object().unwrap();
    assert!(cases.len() >= 11);
    for (name, case) in cases {
        let samples = match case.get("source") {
            Some(source) => {
                audio::load(shared_data().join(source.as_str().unwrap()))
                    .unwrap()
                    .samples
            }
            None => read_f32(&case["input"]).1,
        };
        assert_eq!(samples.len() as u64, case["n_samples"].as_u64().unwrap(), "{name}");

        let features = extractor.extract(&samples, 16_000).unwrap();
        let log_mel = extractor.log_mel(&samples, 16_000).unwrap();
        let (mfcc_shape, mfcc) = read_f32(&case["mfcc"]);
        assert_eq!(mfcc_shape, [config.n_mfcc, features.n_frames], "{name}: frame count");
        let n_mfcc_values = config.n_mfcc * features.n_frames;
        let mfcc_error = max_abs_error(&features.data[..n_mfcc_values], &mfcc);
        let (log_mel_shape, golden_log_mel) = read_f32(&case["log_mel"]);
        assert_eq!(log_mel_shape, [config.n_mels, log_mel.n_frames], "{name}");
        let log_mel_error = max_abs_error(&log_mel.data, &golden_log_mel);

        let zcr = features.row(config.n_mfcc);
        assert_eq!(
            zcr,
            read_f32(&case["zcr"]).1.as_slice(),
            "{name}: zero-crossing rate must be exact"
        );
        let rms_error = features
            .row(config.n_mfcc + 1)
            .iter()
            .zip(&read_f32(&case["rms"]).1)
            .map(|(a, b)| if *b == 0.0 { a.abs() } else { ((a - b) / b).abs() })
            .fold(0.0f32, f32::max);
        eprintln!("{name:>20}: mfcc {mfcc_error:.2e}, log-mel {log_mel_error:.2e}, rms rel {rms_error:.2e}");
        assert!(mfcc_error <= DB_TOLERANCE, "{name}: MFCC max error {mfcc_error}");
        assert!(
            log_mel_error <= DB_TOLERANCE,
            "{name}: log-mel max error {log_mel_error}"
        );
        assert!(rms_error <= RMS_TOLERANCE, "{name}: RMS relative error {rms_error}");
    }
}
