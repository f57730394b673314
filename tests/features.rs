//! Parity with librosa 0.11 on the golden files of `scripts/golden_features.py`,
//! the `features` and `prepare` commands, and the feature cache under kills.

use emofuse::audio;
use emofuse::features::cache::FeatureCache;
use emofuse::features::{FeatureConfig, FeatureExtractor};
use serde_json::Value;

use crate::util::{emofuse, emofuse_ok, golden_dir, golden_index, max_abs_error, read_golden, shared_data};

/// MFCC and log-mel: max absolute error, in dB-scale units.
const DB_TOLERANCE: f32 = 1e-3;
/// RMS: max relative error.
const RMS_TOLERANCE: f32 = 1e-5;

fn read_f32(entry: &Value) -> (Vec<usize>, Vec<f32>) {
    read_golden(&golden_dir("features"), entry)
}

#[test]
fn features_match_librosa() {
    let index = golden_index("features");
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

#[test]
fn features_command_writes_json_and_npy() {
    let dir = tempfile::tempdir().unwrap();
    let samples = crate::util::sine(440.0, 0.5, 16_000, 16_000);
    let wav = crate::util::write(dir.path(), "tone.wav", &crate::util::wav16(&samples, 16_000));
    let wav = wav.to_str().unwrap();
    let expected = FeatureExtractor::new(FeatureConfig::default())
        .unwrap()
        .extract(&audio::load(wav).unwrap().samples, 16_000)
        .unwrap();

    let output = emofuse_ok(&["features", wav, "--json"]);
    let record: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["names"].as_array().unwrap().len(), 42);
    assert_eq!(record["names"][40], "zcr");
    assert_eq!(record["n_frames"], expected.n_frames);
    let rms: Vec<f32> = serde_json::from_value(record["values"][41].clone()).unwrap();
    assert_eq!(rms, expected.row(41));

    let npy = dir.path().join("tone.npy");
    emofuse_ok(&["features", wav, "--npy", npy.to_str().unwrap()]);
    let bytes = std::fs::read(&npy).unwrap();
    let array = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(array.shape(), &[42, expected.n_frames as u64]);
    assert_eq!(array.into_vec::<f32>().unwrap(), expected.data);
}

#[test]
fn features_command_reports_bad_files_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let good = crate::util::write(
        dir.path(),
        "good.wav",
        &crate::util::wav16(&crate::util::sine(300.0, 0.3, 16_000, 8000), 16_000),
    );
    let bad = crate::util::write(dir.path(), "bad.wav", b"RIFF\x10\x00\x00\x00WAVEjunk");
    let output = emofuse(&["features", bad.to_str().unwrap(), good.to_str().unwrap(), "--json"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().lines().count(),
        1,
        "the good file is still done"
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.starts_with(&format!("{}: ", bad.display())), "{stderr}");
}

/// `emofuse prepare` killed (SIGKILL) at several points and restarted: no
/// cache entry is ever read back damaged, and the finished cache holds
/// exactly what a fresh extraction computes.
#[test]
fn feature_cache_survives_kills_during_prepare() {
    let corpus = shared_data().join("ravdess/Audio_Speech_Actors_01-24");
    let cache_dir = tempfile::tempdir().unwrap();
    let args = [
        "prepare",
        corpus.to_str().unwrap(),
        "--cache-dir",
        cache_dir.path().to_str().unwrap(),
    ];
    for delay_ms in [100, 200, 300] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_emofuse"))
            .args(args)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        assert!(
            child.try_wait().unwrap().is_none(),
            "prepare finished before the kill at {delay_ms} ms"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
    // What `train` reads by default: features at the training level.
    let config = FeatureConfig::for_training(Some(emofuse::features::TRAINING_LEVEL_DBFS));
    let cache = FeatureCache::open(cache_dir.path().join("features"), &config).unwrap();
    let extractor = FeatureExtractor::new(config).unwrap();
    let clips = emofuse::data::load(&corpus, emofuse::data::DatasetKind::Auto)
        .unwrap()
        .clips;
    let check = |every: usize| {
        let mut present = 0;
        for clip in clips.iter().step_by(every) {
            let content = FeatureCache::content_hash(&clip.path).unwrap();
            if let Some(cached) = cache.get(&content) {
                let fresh = extractor
                    .extract(&audio::load(&clip.path).unwrap().samples, 16_000)
                    .unwrap();
                assert_eq!(cached, fresh, "{}", clip.path.display());
                present += 1;
            }
        }
        present
    };
    let after_kills = check(7);
    assert!(after_kills < clips.len().div_ceil(7), "the kills interrupted the work");
    emofuse_ok(&args);
    assert_eq!(
        check(7),
        clips.len().div_ceil(7),
        "every clip is cached after the restart"
    );
    eprintln!(
        "{after_kills} of {} checked entries were complete after the kills",
        clips.len().div_ceil(7)
    );
}

/// Issue 20, level invariance: every gain from −30 to +6 dB (1 dB steps, the
/// decoded samples scaled without clamping) leaves the built-in model's
/// probabilities within 0.02 and its label unchanged on the example clips.
#[test]
fn the_builtin_model_does_not_care_how_loud_the_microphone_was() {
    let predictor = emofuse::infer::Predictor::builtin(&burn::tensor::Device::flex()).unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ravdess-mini");
    let mut clips: Vec<_> = ["Actor_01", "Actor_02"]
        .iter()
        .flat_map(|actor| std::fs::read_dir(examples.join(actor)).unwrap())
        .map(|entry| entry.unwrap().path())
        .collect();
    clips.sort();
    assert_eq!(clips.len(), 4);
    for path in &clips {
        let clip = audio::load(path).unwrap();
        let reference = predictor.predict(&clip, "reference").unwrap();
        for gain_db in -30..=6 {
            let gain = 10f32.powf(gain_db as f32 / 20.0);
            let scaled = audio::Waveform {
                samples: clip.samples.iter().map(|s| s * gain).collect(),
                sample_rate: clip.sample_rate,
            };
            let prediction = predictor.predict(&scaled, "scaled").unwrap();
            let moved = max_abs_error(&prediction.probabilities, &reference.probabilities);
            assert!(
                moved <= 0.02,
                "{} at {gain_db} dB: probabilities moved by {moved}",
                path.display()
            );
            assert_eq!(prediction.label, reference.label, "{} at {gain_db} dB", path.display());
        }
    }
}
