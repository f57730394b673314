//! Explanations as users get them: the numbers add up, the pictures are
//! written, and the saliency is faithful where the model allows it to be.

use serde_json::Value;

use emofuse::audio;
use emofuse::explain::{self, ExplainOptions};
use emofuse::infer::Predictor;

use crate::util::{emofuse, emofuse_ok, golden_dir, shared_data, tiny_manifest, train_tiny};

fn ravdess_clip(actor: u32, name: &str) -> std::path::PathBuf {
    shared_data()
        .join("ravdess/Audio_Speech_Actors_01-24")
        .join(format!("Actor_{actor:02}"))
        .join(name)
}

fn check_explanation(e: &Value) {
    let probabilities: Vec<f64> = e["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    assert!((probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-4);
    for key in ["streams", "feature_groups", "time_segments"] {
        if e[key].is_null() {
            continue;
        }
        let gap = e[key]["efficiency_gap"].as_f64().unwrap();
        assert!(gap.abs() < 1e-5, "{key}: Σφ ≠ f(x) − f(baseline), gap {gap}");
        let full = e[key]["full_value"].as_f64().unwrap();
        let explained = e["explained_probability"].as_f64().unwrap();
        assert!((full - explained).abs() < 1e-4, "{key}: v(N) {full} ≠ p {explained}");
    }
    for stream in ["spectral", "temporal"] {
        let Some(s) = e[stream].as_object() else { continue };
        let saliency = s["saliency"].as_array().unwrap();
        assert_eq!(saliency.len(), s["saliency_times_s"].as_array().unwrap().len());
        assert!(saliency.iter().all(|v| (0.0..=1.0).contains(&v.as_f64().unwrap())));
        let alpha: f64 = s["alpha"].as_array().unwrap().iter().map(|a| a.as_f64().unwrap()).sum();
        assert!((alpha - 1.0).abs() < 1e-4, "{stream}: α sums to {alpha}");
    }
}

fn png_size(path: &std::path::Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn explain_writes_a_picture_and_consistent_numbers_with_the_builtin_model() {
    let out = tempfile::tempdir().unwrap();
    let clip = ravdess_clip(3, "03-01-05-02-01-01-03.flac");
    let output = emofuse_ok(&[
        "explain",
        clip.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--json",
    ]);
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    check_explanation(&printed[0]);
    let written: Value = serde_json::from_slice(&std::fs::read(out.path().join("explanation.json")).unwrap()).unwrap();
    assert_eq!(written, printed[0]);
    assert_eq!(png_size(&out.path().join("explanation.png")), (1400, 1240));
    let groups = written["feature_groups"]["players"].as_array().unwrap();
    assert_eq!(groups.len(), 5, "MFCC thirds, ZCR, RMS");
}

#[test]
fn spectral_saliency_beats_random_deletion_on_real_clips() {
    let predictor = Predictor::builtin(&burn::tensor::Device::flex()).unwrap();
    let options = ExplainOptions::default();
    let (mut salient, mut random) = (0.0, 0.0);
    let names = [
        "03-01-03-01-01-01-{a}.flac",
        "03-01-04-02-02-01-{a}.flac",
        "03-01-05-01-01-02-{a}.flac",
        "03-01-06-02-02-02-{a}.flac",
    ];
    for actor in [5, 12, 19] {
        for name in names {
            let path = ravdess_clip(actor, &name.replace("{a}", &format!("{actor:02}")));
            let waveform = audio::load(&path).unwrap();
            let e = explain::explain(&predictor, &waveform, &path.display().to_string(), &options).unwrap();
            let f = &e.spectral.unwrap().faithfulness;
            salient += f.auc_salient;
            random += f.auc_random;
        }
    }
    // Deleting the most salient frames first must hurt more than deleting at random.
    assert!(
        salient < random,
        "salient-first {salient:.3} vs random {random:.3} (sums over 12 clips)"
    );
}

/// The probe-like temporal head (every layer side by side, statistics
/// pooling) trains on a frozen encoder, is saved as such, and is explained
/// like the attentive one (its time-segment SHAP leaves frames out of the
/// statistics; its α weighs the frames equally).
#[test]
fn a_temporal_stream_with_concatenated_layers_and_statistics_pooling_trains_and_explains() {
    let dir = tempfile::tempdir().unwrap();
    let backbone = golden_dir("whisper").join("hf");
    let extra = [
        "--backbone",
        backbone.to_str().unwrap(),
        "--temporal-layers",
        "concat",
        "--temporal-pooling",
        "statistics",
    ];
    let model = train_tiny(dir.path(), "fusion-gated", "model", &extra);
    let config: Value = serde_json::from_slice(&std::fs::read(model.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model"]["temporal"]["layers"], "concat");
    assert_eq!(config["model"]["temporal"]["pooling"], "statistics");
    let clip = ravdess_clip(1, "03-01-06-02-02-01-01.flac");
    let out = dir.path().join("why");
    let output = emofuse_ok(&[
        "explain",
        clip.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    let e: Value = serde_json::from_slice(&output.stdout).unwrap();
    check_explanation(&e[0]);
}

#[test]
fn a_fusion_model_is_explained_on_both_streams() {
    let dir = tempfile::tempdir().unwrap();
    let model = train_tiny(dir.path(), "fusion-gated", "model", &[]);
    let manifest = tiny_manifest(dir.path());
    let out = dir.path().join("explained");
    let clip = ravdess_clip(1, "03-01-05-02-01-01-01.flac");
    let output = emofuse_ok(&[
        "explain",
        clip.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--class",
        "sad",
        "--cam-channels",
        "4",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    let e: Value = serde_json::from_slice(&output.stdout).unwrap();
    let e = &e[0];
    check_explanation(e);
    assert_eq!(e["explained"], "sad");
    assert_eq!(e["streams"]["players"], serde_json::json!(["spectral", "temporal"]));
    assert!(e["gate_spectral"].as_f64().is_some());
    assert!(out.join("explanation.png").is_file());

    let study = dir.path().join("study");
    let noise = shared_data().join("noise/urbansound8k");
    let output = emofuse_ok(&[
        "explain",
        "--snr-study",
        "--model",
        model.to_str().unwrap(),
        "--data",
        manifest.to_str().unwrap(),
        "--noise-dir",
        noise.to_str().unwrap(),
        "--snr",
        "clean,0",
        "--max-clips",
        "6",
        "--out",
        study.to_str().unwrap(),
        "--json",
    ]);
    let rows: Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "one row per SNR");
    for row in rows {
        assert_eq!(row["clips"], 6);
        let share = row["temporal_share"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&share));
        assert!(row["mean_gate_spectral"].as_f64().is_some());
    }
    for file in ["snr_study.json", "snr_study.csv", "snr_study.png"] {
        assert!(study.join(file).is_file(), "{file}");
    }

    let output = emofuse(&[
        "explain",
        clip.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--class",
        "contempt",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("the model's classes are"));
}
