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
        "neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise", "boredom",
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

/// The bundled example clip the model-folder tests predict.
const EXAMPLE_CLIP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/ravdess-mini/Actor_01/03-01-05-02-01-01-01.flac"
);

/// The built-in model's `config.json` text and weights, to edit.
fn default_model() -> (String, Vec<u8>) {
    let default = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    (
        std::fs::read_to_string(default.join("config.json")).unwrap(),
        std::fs::read(default.join("model.safetensors")).unwrap(),
    )
}

/// Predicts with a model folder of `config` and `weights` in `dir/name`,
/// which must be refused (exit status 1, no panic) saying `says`.
fn refused_model(dir: &std::path::Path, name: &str, config: &str, weights: &[u8], says: &str) {
    let model = dir.join(name);
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("config.json"), config).unwrap();
    std::fs::write(model.join("model.safetensors"), weights).unwrap();
    let output = emofuse(&["predict", EXAMPLE_CLIP, "--model", model.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
    assert!(stderr.contains(says), "{name}: {stderr:?} does not say {says:?}");
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");
}

#[test]
fn bad_model_folders_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (config, weights) = default_model();
    let case =
        |name: &str, config: &str, weights: &[u8], says: &str| refused_model(dir.path(), name, config, weights, says);
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
    let narrower = config.replacen("\"kernel_size\": 5", "\"kernel_size\": 3", 1);
    assert_ne!(narrower, config, "the test edits the CNN's kernel size");
    case("other shapes", &narrower, &weights, "do not fit");
    let output = emofuse(&[
        "predict",
        EXAMPLE_CLIP,
        "--model",
        dir.path().join("missing").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));
}

/// Issue 18: model configs that used to panic (no CNN blocks: `expect` in
/// the spectral CNN; fewer labels than classes: an index out of bounds) are
/// refused where `config.json` is read, with the reason.
#[test]
fn issue_18_configs_that_would_panic_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (config, weights) = default_model();
    let config: Value = serde_json::from_str(&config).unwrap();
    let mut no_blocks = config.clone();
    no_blocks["model"]["spectral"]["channels"] = serde_json::json!([]);
    let mut few_labels = config.clone();
    few_labels["labels"] = serde_json::json!(["neutral", "sad"]);
    for (name, config, says) in [
        ("no blocks", no_blocks, "spectral channels []"),
        ("few labels", few_labels, "2 labels for a classifier of 9 classes"),
    ] {
        let says = format!("not a usable model config: {says}");
        refused_model(dir.path(), name, &config.to_string(), &weights, &says);
    }
}

/// Issue 18: `--fold K` without the folds it is one of was ignored (`train`
/// trained on every clip, `eval` scored every clip and called it "fold 1").
#[test]
fn issue_18_a_fold_without_its_protocol_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ravdess = shared_data().join("ravdess");
    let out = dir.path().join("run");
    for args in [
        vec![
            "train",
            "--data",
            ravdess.to_str().unwrap(),
            "--fold",
            "1",
            "--out",
            out.to_str().unwrap(),
        ],
        vec!["eval", "--data", ravdess.to_str().unwrap(), "--fold", "1"],
    ] {
        let output = emofuse(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim(),
            "emofuse: error: --fold 1 needs --protocol or --fold-file to say which folds it is one of"
        );
    }
    assert!(!out.exists(), "nothing was trained");
}

/// Issue 18: the two readers of a folds file disagreed (`train` compared
/// paths as files, `eval` as strings, so a file written with other paths
/// than `--data`'s matched nothing); both compare files now.
#[test]
fn issue_18_a_fold_file_matches_clips_by_file_not_by_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let ravdess = shared_data().join("ravdess");
    let folds = emofuse_ok(&[
        "data",
        "folds",
        ravdess.to_str().unwrap(),
        "--protocol",
        "emobox",
        "--json",
    ]);
    let file = dir.path().join("folds.json");
    std::fs::write(&file, &folds.stdout).unwrap();
    // The same corpus spelled another way: its real path, without `..`.
    let canonical = ravdess.canonicalize().unwrap();
    assert_ne!(canonical, ravdess);
    let report = json_of(&[
        "eval",
        "--data",
        canonical.to_str().unwrap(),
        "--fold-file",
        file.to_str().unwrap(),
        "--fold",
        "2",
        "--json",
    ]);
    assert_eq!(report["metrics"]["clips"], 240, "fold 2's 4 actors × 60 clips");
    assert_eq!(report["fold"], "fold 2");
}

/// Issue 18: `serve --timeout inf` panicked in `Duration::from_secs_f64`.
#[test]
fn issue_18_serve_refuses_limits_that_are_not_positive_numbers() {
    for (flag, value) in [
        ("--timeout", "inf"),
        ("--timeout", "0"),
        ("--max-body-mb", "NaN"),
        ("--max-duration", "-1"),
    ] {
        let output = emofuse(&["serve", &format!("{flag}={value}"), "--addr", "127.0.0.1:0"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{flag} {value}: {stderr}");
        assert!(stderr.contains(&format!("{flag} {value}")), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// `--device`: `cpu` runs; a GPU without the `gpu` feature (or without a
/// GPU) is a clear error, not a silent fallback.
#[test]
fn device_flag_picks_the_device_or_says_why_not() {
    let clip = EXAMPLE_CLIP;
    let on_cpu = json_of(&["predict", clip, "--json", "--device", "cpu"]);
    let default = json_of(&["predict", clip, "--json"]);
    assert_eq!(on_cpu, default, "cpu is the default");
    let output = emofuse(&["predict", clip, "--device", "tpu"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("want cpu, gpu or gpu:N"));
    if cfg!(not(feature = "gpu")) {
        let output = emofuse(&["predict", clip, "--device", "gpu:0"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("without GPU support"), "{stderr}");
    }
}

/// Cross-corpus `eval`: the built-in model (9 classes, with calm) on EmoDB
/// clips (no calm), one of them labelled with a class the model does not have.
#[test]
fn eval_on_another_corpus_scores_the_shared_classes_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = String::from("path,label,speaker,dataset\n");
    for (name, label) in [
        ("03a01Wa", "angry"),
        ("03a01Nc", "neutral"),
        ("03a02Ta", "sad"),
        ("03a01Fa", "happy"),
        // EmoDB's boredom, named as a class no model here has.
        ("03a04Lc", "contempt"),
    ] {
        let path = shared_data().join(format!("emodb/wav/{name}.flac"));
        assert!(path.is_file(), "{}", path.display());
        rows += &format!("{},{label},03,emodb\n", path.display());
    }
    let manifest = dir.path().join("emodb.csv");
    std::fs::write(&manifest, rows).unwrap();
    let report = json_of(&["eval", "--data", manifest.to_str().unwrap(), "--json"]);
    let labels: Vec<&str> = report["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(!labels.contains(&"calm"), "calm counts as neutral: {labels:?}");
    assert_eq!(labels.len(), 8);
    assert_eq!(
        report["shared_labels"],
        serde_json::json!(["neutral", "happy", "sad", "angry"])
    );
    assert!(
        report["label_note"]
            .as_str()
            .unwrap()
            .contains("calm counts as neutral")
    );
    assert_eq!(report["unscored"], serde_json::json!({"contempt": 1}));
    assert_eq!(report["metrics"]["clips"], 4);
}

/// Issue 20, speech presence: a quiet voice gets an answer, dithered
/// silence a refusal, and a timeline skips its silent windows.
#[test]
fn predict_answers_a_quiet_voice_and_refuses_near_silence() {
    use crate::util::{Encoding, Wav};
    use rand::{Rng, SeedableRng};

    let dir = tempfile::tempdir().unwrap();
    let float_wav = |name: &str, samples: &[f32]| {
        crate::util::write(dir.path(), name, &Wav::new(Encoding::F32, 1, 16_000).bytes(samples))
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let peak = 10f32.powf(-90.0 / 20.0);
    let dither: Vec<f32> = (0..16_000 * 6).map(|_| rng.random_range(-peak..peak)).collect();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ravdess-mini");
    let mut voice = Vec::new();
    for actor in ["Actor_01", "Actor_02"] {
        for entry in std::fs::read_dir(examples.join(actor)).unwrap() {
            let clip = emofuse::audio::load(entry.unwrap().path()).unwrap();
            let quiet: Vec<f32> = clip.samples.iter().map(|s| s * 10f32.powf(-30.0 / 20.0)).collect();
            let path = float_wav(&format!("quiet-{}.wav", voice.len()), &quiet);
            voice.push(path);
            if voice.len() == 1 {
                // Speech, then six seconds of dither.
                let mut long = clip.samples.clone();
                long.extend_from_slice(&dither);
                float_wav("then-silence.wav", &long);
            }
        }
    }
    for path in &voice {
        emofuse_ok(&["predict", path.to_str().unwrap()]);
    }
    let silence = float_wav("dither.wav", &dither);
    let output = emofuse(&["predict", silence.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("dither.wav: no speech to judge"), "{stderr}");

    let long = dir.path().join("then-silence.wav");
    let output = emofuse_ok(&["predict", long.to_str().unwrap(), "--window", "2", "--json"]);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let report = if report.is_array() { report[0].clone() } else { report };
    let windows = report["timeline"]["windows"].as_array().unwrap();
    assert!(windows[0]["speech"].as_bool().unwrap() && windows[0]["label"].is_string());
    // Keyed by label, like the prediction of the whole file.
    let label = windows[0]["label"].as_str().unwrap();
    let window_probabilities = windows[0]["probabilities"].as_object().unwrap();
    assert_eq!(window_probabilities.len(), report["labels"].as_array().unwrap().len());
    assert_eq!(window_probabilities[label], windows[0]["confidence"]);
    let last = windows.last().unwrap();
    assert_eq!(last["speech"], false);
    assert!(last.get("label").is_none(), "{last}");
}

/// `export --onnx` writes a well-formed graph (every node's inputs defined
/// before it) with dynamic batch and frames; onnxruntime's check of its
/// numbers is in python/tests.
#[test]
fn the_default_model_exports_to_onnx() {
    use onnx_protobuf::Message;
    use onnx_protobuf::tensor_shape_proto::dimension::Value;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("default.onnx");
    emofuse_ok(&["export", "--onnx", path.to_str().unwrap()]);
    let model = onnx_protobuf::ModelProto::parse_from_bytes(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(model.opset_import[0].version, 17);
    let graph = model.graph.as_ref().unwrap();
    let dims = |info: &onnx_protobuf::ValueInfoProto| -> Vec<String> {
        let Some(onnx_protobuf::type_proto::Value::TensorType(tensor)) = &info.type_.value else {
            panic!()
        };
        tensor
            .shape
            .dim
            .iter()
            .map(|d| match &d.value {
                Some(Value::DimParam(name)) => name.clone(),
                Some(Value::DimValue(size)) => size.to_string(),
                _ => "?".into(),
            })
            .collect()
    };
    assert_eq!(dims(&graph.input[0]), ["batch", "42", "frames"]);
    assert_eq!(dims(&graph.output[0]), ["batch", "9"]);
    let mut defined: BTreeSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    defined.insert("features".into());
    for node in &graph.node {
        for input in &node.input {
            assert!(defined.contains(input), "{} reads {input} before it exists", node.name);
        }
        defined.extend(node.output.iter().cloned());
    }
    assert!(defined.contains("probabilities"));
    let ops: BTreeSet<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
    for op in [
        "Conv",
        "LayerNormalization",
        "Erf",
        "MaxPool",
        "Tanh",
        "Softmax",
        "ReduceSum",
        "MatMul",
    ] {
        assert!(ops.contains(op), "no {op} node");
    }
}
