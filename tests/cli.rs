//! The `emofuse` executable as users run it.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::util::{emofuse, emofuse_ok, shared_data};

fn json_of(args: &[&str]) -> Value {
    let output = emofuse(args);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON object")
}

#[test]
fn summary_json_of_the_real_corpora() {
    for (corpus, clips, speakers, labels) in [("ravdess", 1440, 24, 8), ("tess", 2800, 2, 7)] {
        let dir = shared_data().join(corpus);
        let summary = json_of(&["data", "summary", dir.to_str().unwrap(), "--json"]);
        assert_eq!(summary["dataset"], corpus);
        assert_eq!(summary["clips"], clips);
        assert_eq!(summary["speakers"], speakers);
        assert_eq!(summary["labels"].as_object().unwrap().len(), labels);
        assert!(summary["duration_s"]["median"].as_f64().unwrap() > 1.0);
        assert_eq!(summary["problems"], Value::Array(vec![]));
    }
}

#[test]
fn folds_json_is_leak_free() {
    let dir = shared_data().join("ravdess");
    let report = json_of(&["data", "folds", dir.to_str().unwrap(), "--protocol", "emobox", "--json"]);
    let folds = report["folds"].as_array().unwrap();
    assert_eq!(folds.len(), 6);
    assert_eq!(report["speaker_independent"], true);
    let actor = |path: &Value| path.as_str().unwrap().rsplit('-').next().unwrap().to_owned();
    for fold in folds {
        let train: BTreeSet<String> = fold["train"].as_array().unwrap().iter().map(actor).collect();
        let test: BTreeSet<String> = fold["test"].as_array().unwrap().iter().map(actor).collect();
        assert!(train.is_disjoint(&test), "{train:?} / {test:?}");
        assert_eq!(fold["test_speakers"].as_array().unwrap().len(), 4);
    }
}

#[test]
fn readme_main_command_runs_on_the_bundled_example() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let command = "cargo run --release -- predict examples/ravdess-mini/Actor_01/03-01-05-02-01-01-01.flac";
    assert!(
        readme.contains(command),
        "the README's main command changed; update this test"
    );
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/ravdess-mini/Actor_01/03-01-05-02-01-01-01.flac"
    );
    let output = emofuse_ok(&["predict", example, "--json"]);
    let prediction: Value = serde_json::from_slice(&output.stdout).unwrap();
    let labels = [
        "neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise",
    ];
    assert!(labels.contains(&prediction["label"].as_str().unwrap()), "{prediction}");

    let summary = emofuse(&[
        "data",
        "summary",
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ravdess-mini"),
    ]);
    let table = String::from_utf8(summary.stdout).unwrap();
    assert!(table.contains("clips         4"), "{table}");
}

#[test]
fn user_errors_exit_non_zero_with_one_line() {
    let cases: [&[&str]; 3] = [
        &["data", "summary", "/nonexistent/corpus"],
        &["data", "folds", "/nonexistent/corpus", "--protocol", "loso"],
        &[
            "data",
            "folds",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ravdess-mini"),
            "--protocol",
            "kfold",
            "--k",
            "9",
        ],
    ];
    for args in cases {
        let output = emofuse(args);
        assert!(!output.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("emofuse: error: "), "{stderr}");
    }
}

#[test]
fn skipped_files_are_listed_and_set_the_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let good = crate::util::wav16(&crate::util::sine(200.0, 0.3, 16_000, 1600), 16_000);
    crate::util::write(dir.path(), "Actor_01/03-01-05-01-01-01-01.wav", &good);
    crate::util::write(dir.path(), "Actor_02/03-01-05-01-01-01-02.wav", &good);
    let bad = crate::util::write(dir.path(), "Actor_02/03-01-04-01-01-01-02.wav", b"");
    let output = emofuse(&["data", "summary", dir.path().to_str().unwrap(), "--json"]);
    assert_eq!(output.status.code(), Some(2));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["clips"], 2);
    assert_eq!(summary["problems"][0]["reason"], "file is empty");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(&format!("{}: file is empty", bad.display())),
        "{stderr}"
    );
}

#[test]
fn negative_snrs_are_values_not_flags() {
    let output = emofuse(&[
        "train",
        "--data",
        "/nonexistent",
        "--out",
        "/tmp/x",
        "--snr-range",
        "-5:20",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("unexpected argument"), "{stderr}");
    assert!(stderr.contains("/nonexistent"), "{stderr}");
}

#[test]
fn bad_model_folders_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let clip = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/ravdess-mini/Actor_01/03-01-05-02-01-01-01.flac"
    );
    let default = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let config = std::fs::read_to_string(default.join("config.json")).unwrap();
    let weights = std::fs::read(default.join("model.safetensors")).unwrap();
    let case = |name: &str, config: &str, weights: &[u8], says: &str| {
        let model = dir.path().join(name);
        std::fs::create_dir_all(&model).unwrap();
        std::fs::write(model.join("config.json"), config).unwrap();
        std::fs::write(model.join("model.safetensors"), weights).unwrap();
        let output = emofuse(&["predict", clip, "--model", model.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}: accepted");
        assert!(stderr.contains(says), "{name}: {stderr:?} does not say {says:?}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    };
    case(
        "not json",
        "{ this is not json",
        &weights,
        "not an emofuse model config",
    );
    case(
        "truncated weights",
        &config,
        &weights[..weights.len() / 2],
        "do not fit",
    );
    let wider = config.replacen("128,\n        128\n      ]", "128,\n        256\n      ]", 1);
    assert_ne!(wider, config, "the test edits the last CNN width");
    case("other shapes", &wider, &weights, "do not fit");
    let output = emofuse(&["predict", clip, "--model", dir.path().join("missing").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));
}
