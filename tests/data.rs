//! Corpus loaders on the real data and on generated SAVEE/CREMA-D layouts, and
//! the folds made from them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use emofuse::data::folds::{self, FoldError, FoldOptions, Protocol};
use emofuse::data::{self, Corpus, DatasetKind, summary};

use crate::util::{self, shared_data, sine, wav16};

fn options(protocol: Protocol) -> FoldOptions {
    FoldOptions {
        protocol,
        seed: 0,
        allow_speaker_overlap: false,
    }
}

fn test_speakers(fold: &folds::Fold) -> BTreeSet<&str> {
    fold.test_speakers.iter().map(String::as_str).collect()
}

#[test]
fn ravdess_is_recognised_and_complete() {
    let dataset = data::load(&shared_data().join("ravdess"), DatasetKind::Auto).unwrap();
    assert_eq!(dataset.corpus, Corpus::Ravdess);
    assert!(dataset.problems.is_empty(), "{:?}", dataset.problems);
    let summary = summary::summarise(&dataset, || {});
    assert_eq!((summary.clips, summary.speakers, summary.labels.len()), (1440, 24, 8));
    assert_eq!(summary.labels["neutral"], 96);
    assert_eq!(summary.labels["surprise"], 192);
    assert!(summary.per_speaker.values().all(|&n| n == 60));
    assert_eq!(summary.sample_rates, BTreeMap::from([(16_000, 1440)]));
    assert!(
        (summary.duration_s.total - 5329.0).abs() < 0.5,
        "{:?}",
        summary.duration_s
    );
    assert!((summary.duration_s.min - 2.936).abs() < 1e-3 && (summary.duration_s.max - 5.272).abs() < 1e-3);
}

#[test]
fn tess_is_recognised_with_its_folder_quirks() {
    let dataset = data::load(&shared_data().join("tess"), DatasetKind::Auto).unwrap();
    assert_eq!(dataset.corpus, Corpus::Tess);
    assert!(dataset.problems.is_empty(), "{:?}", dataset.problems);
    let summary = summary::summarise(&dataset, || {});
    assert_eq!((summary.clips, summary.speakers, summary.labels.len()), (2800, 2, 7));
    assert!(summary.labels.values().all(|&n| n == 400), "{:?}", summary.labels);
    assert_eq!(summary.per_speaker["tess:OAF"], 1400);
}

#[test]
fn ravdess_emobox_folds_are_the_published_ones_and_leak_free() {
    let dataset = data::load(&shared_data().join("ravdess"), DatasetKind::Ravdess).unwrap();
    let folds = folds::make_folds(&dataset.clips, dataset.corpus, &options(Protocol::Emobox)).unwrap();
    assert_eq!(folds.len(), 6);
    let first: BTreeSet<&str> = ["ravdess:01", "ravdess:11", "ravdess:20", "ravdess:21"].into();
    assert_eq!(test_speakers(&folds[0]), first);
    let mut tested = BTreeSet::new();
    for fold in &folds {
        assert_eq!((fold.train.len(), fold.test.len()), (1200, 240));
        let balance = folds::class_balance(&dataset.clips, &fold.test);
        assert_eq!(balance["neutral"], 16);
        assert_eq!(balance["angry"], 32);
        for &i in &fold.test {
            assert!(tested.insert(i), "clip {i} is tested twice");
        }
        let train_speakers: BTreeSet<_> = fold.train.iter().map(|&i| dataset.clips[i].speaker.clone()).collect();
        assert!(
            fold.test
                .iter()
                .all(|&i| !train_speakers.contains(&dataset.clips[i].speaker))
        );
    }
    assert_eq!(tested.len(), 1440, "every clip is tested exactly once over the folds");
}

#[test]
fn tess_offers_cross_speaker_and_emobox_splits() {
    let dataset = data::load(&shared_data().join("tess"), DatasetKind::Auto).unwrap();
    let loso = folds::make_folds(&dataset.clips, dataset.corpus, &options(Protocol::Loso)).unwrap();
    assert_eq!(loso.len(), 2);
    assert!(
        loso.iter()
            .all(|fold| fold.test.len() == 1400 && fold.test_speakers.len() == 1)
    );

    let refused = folds::make_folds(&dataset.clips, dataset.corpus, &options(Protocol::Emobox));
    assert_eq!(refused, Err(FoldError::EmoboxSpeakerDependent { corpus: "tess" }));
    let allowed = FoldOptions {
        allow_speaker_overlap: true,
        ..options(Protocol::Emobox)
    };
    let emobox = folds::make_folds(&dataset.clips, dataset.corpus, &allowed).unwrap();
    assert_eq!(emobox.len(), 1);
    assert_eq!((emobox[0].train.len(), emobox[0].test.len()), (2100, 700));
    assert!(
        folds::class_balance(&dataset.clips, &emobox[0].test)
            .values()
            .all(|&n| n == 100)
    );
}

#[test]
fn kfold_is_the_same_on_every_machine() {
    let dataset = data::load(&shared_data().join("ravdess"), DatasetKind::Ravdess).unwrap();
    let kfold = FoldOptions {
        seed: 42,
        ..options(Protocol::Kfold { k: 4 })
    };
    let folds = folds::make_folds(&dataset.clips, dataset.corpus, &kfold).unwrap();
    let actors: Vec<Vec<&str>> = folds
        .iter()
        .map(|fold| {
            fold.test_speakers
                .iter()
                .map(|s| s.trim_start_matches("ravdess:"))
                .collect()
        })
        .collect();
    // Pinned: ChaCha8 is portable, so this only changes if the algorithm does.
    let pinned: Vec<Vec<&str>> = PINNED_KFOLD_SEED_42.iter().map(|f| f.to_vec()).collect();
    assert_eq!(actors, pinned);
    assert!(folds.iter().all(|fold| fold.test.len() == 360));
}

const PINNED_KFOLD_SEED_42: [[&str; 6]; 4] = [
    ["05", "07", "08", "16", "19", "22"],
    ["01", "02", "13", "14", "18", "21"],
    ["04", "09", "10", "12", "15", "23"],
    ["03", "06", "11", "17", "20", "24"],
];

/// A SAVEE release with tiny audio: flat `DC_a01.wav` names or `AudioData/DC/a01.wav`.
fn savee_fixture(root: &Path, nested: bool) {
    let codes = [
        ("a", 15),
        ("d", 15),
        ("f", 15),
        ("h", 15),
        ("n", 30),
        ("sa", 15),
        ("su", 15),
    ];
    let audio = wav16(&sine(200.0, 0.3, 16_000, 160), 16_000);
    for speaker in ["DC", "JE", "JK", "KL"] {
        for (code, count) in codes {
            for n in 1..=count {
                let name = if nested {
                    format!("AudioData/{speaker}/{code}{n:02}.wav")
                } else {
                    format!("ALL/{speaker}_{code}{n:02}.wav")
                };
                util::write(root, &name, &audio);
            }
        }
    }
}

#[test]
fn savee_both_layouts_with_emobox_folds() {
    for nested in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        savee_fixture(dir.path(), nested);
        let dataset = data::load(dir.path(), DatasetKind::Auto).unwrap();
        assert_eq!(dataset.corpus, Corpus::Savee, "nested = {nested}");
        let summary = summary::summarise(&dataset, || {});
        assert_eq!((summary.clips, summary.speakers, summary.labels.len()), (480, 4, 7));
        assert_eq!(summary.labels["neutral"], 120);
        let folds = folds::make_folds(&dataset.clips, dataset.corpus, &options(Protocol::Emobox)).unwrap();
        let order: Vec<&str> = folds.iter().map(|f| f.test_speakers[0].as_str()).collect();
        assert_eq!(order, ["savee:JE", "savee:KL", "savee:DC", "savee:JK"]);
    }
}

#[test]
fn crema_d_names_and_speaker_folds() {
    let dir = tempfile::tempdir().unwrap();
    let emotions = ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"];
    for actor in 1001..=1010 {
        for (i, emotion) in emotions.iter().enumerate() {
            let level = if i % 2 == 0 { "XX" } else { "HI" };
            util::write(
                dir.path(),
                &format!("AudioWAV/{actor}_IEO_{emotion}_{level}.wav"),
                b"names only",
            );
        }
    }
    let dataset = data::load(dir.path(), DatasetKind::Auto).unwrap();
    assert_eq!(dataset.corpus, Corpus::CremaD);
    assert_eq!(dataset.clips.len(), 60);
    let folds = folds::make_folds(&dataset.clips, dataset.corpus, &options(Protocol::Kfold { k: 5 })).unwrap();
    assert!(
        folds
            .iter()
            .all(|fold| fold.test_speakers.len() == 2 && fold.test.len() == 12)
    );
    let emobox = folds::make_folds(&dataset.clips, dataset.corpus, &options(Protocol::Emobox));
    assert_eq!(emobox, Err(FoldError::EmoboxSpeakerDependent { corpus: "crema-d" }));
}

#[test]
fn unreadable_files_are_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let good = wav16(&sine(200.0, 0.3, 16_000, 1600), 16_000);
    util::write(dir.path(), "Actor_01/03-01-05-01-01-01-01.wav", &good);
    util::write(dir.path(), "Actor_02/03-01-05-01-01-01-02.wav", &good);
    let broken = util::write(dir.path(), "Actor_02/03-01-04-01-01-01-02.wav", b"garbage, not audio");
    let misnamed = util::write(dir.path(), "Actor_02/notes.wav", &good);
    let dataset = data::load(dir.path(), DatasetKind::Auto).unwrap();
    assert_eq!(dataset.corpus, Corpus::Ravdess);
    let summary = summary::summarise(&dataset, || {});
    assert_eq!(summary.clips, 2);
    let problems: Vec<_> = summary
        .problems
        .iter()
        .map(|p| (p.path.clone(), p.reason.clone()))
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].0, broken);
    assert!(problems[0].1.contains("not a recognised audio format"), "{problems:?}");
    assert_eq!(problems[1].0, misnamed);
    assert!(problems[1].1.contains("not a RAVDESS name"), "{problems:?}");
}

#[test]
fn folder_per_label_with_speakers() {
    let dir = tempfile::tempdir().unwrap();
    let audio = wav16(&sine(200.0, 0.3, 16_000, 1600), 16_000);
    for label in ["Happy", "sad", "excited"] {
        for speaker in ["ann", "bob", "cyd"] {
            util::write(dir.path(), &format!("{label}/{speaker}/take1.flac"), &audio);
        }
    }
    let dataset = data::load(dir.path(), DatasetKind::Auto).unwrap();
    assert_eq!(dataset.corpus, Corpus::Folder);
    let labels: BTreeSet<&str> = dataset.clips.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels, ["excited", "happy", "sad"].into());
    let loso = folds::make_folds(&dataset.clips, dataset.corpus, &options(Protocol::Loso)).unwrap();
    assert_eq!(loso.len(), 3);
}

#[test]
fn missing_corpus_is_an_error() {
    let err = data::load(Path::new("/nonexistent/corpus"), DatasetKind::Auto).unwrap_err();
    assert_eq!(err.to_string(), "/nonexistent/corpus: no such file or directory");
    let empty = tempfile::tempdir().unwrap();
    assert!(
        data::load(empty.path(), DatasetKind::Auto)
            .unwrap_err()
            .to_string()
            .ends_with("no audio files found")
    );
}

#[test]
fn emodb_and_emovo_are_recognised_with_their_folds() {
    let emodb = data::load(&shared_data().join("emodb"), DatasetKind::Auto).unwrap();
    assert_eq!(emodb.corpus, Corpus::Emodb);
    assert!(emodb.problems.is_empty(), "{:?}", emodb.problems);
    let labels = folds::class_balance(&emodb.clips, &(0..emodb.clips.len()).collect::<Vec<_>>());
    let expected = [
        ("angry", 127),
        ("boredom", 81),
        ("disgust", 46),
        ("fear", 69),
        ("happy", 71),
        ("neutral", 79),
        ("sad", 62),
    ];
    assert_eq!(labels, expected.map(|(l, n)| (l.to_owned(), n)).into());
    // The default: five folds of one male and one female speaker.
    let pairs = folds::make_folds(
        &emodb.clips,
        emodb.corpus,
        &options(Protocol::default_for(emodb.corpus)),
    )
    .unwrap();
    let speakers: Vec<Vec<&str>> = pairs
        .iter()
        .map(|f| f.test_speakers.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        speakers,
        [
            ["emodb:03", "emodb:08"],
            ["emodb:09", "emodb:10"],
            ["emodb:11", "emodb:13"],
            ["emodb:12", "emodb:14"],
            ["emodb:15", "emodb:16"]
        ]
    );
    // EmoBox's five folds share speakers: only when asked.
    let refused = folds::make_folds(&emodb.clips, emodb.corpus, &options(Protocol::Emobox));
    assert_eq!(refused, Err(FoldError::EmoboxSpeakerDependent { corpus: "emodb" }));
    let allowed = FoldOptions {
        allow_speaker_overlap: true,
        ..options(Protocol::Emobox)
    };
    let emobox = folds::make_folds(&emodb.clips, emodb.corpus, &allowed).unwrap();
    assert!(
        emobox
            .iter()
            .all(|fold| fold.test.len() == 107 && fold.test_speakers.len() == 10)
    );

    let emovo = data::load(&shared_data().join("emovo"), DatasetKind::Auto).unwrap();
    assert_eq!((emovo.corpus, emovo.clips.len()), (Corpus::Emovo, 588));
    assert!(emovo.problems.is_empty(), "{:?}", emovo.problems);
    let folds = folds::make_folds(&emovo.clips, emovo.corpus, &options(Protocol::Emobox)).unwrap();
    let order: Vec<&str> = folds.iter().map(|f| f.test_speakers[0].as_str()).collect();
    assert_eq!(
        order,
        ["emovo:f2", "emovo:m3", "emovo:m2", "emovo:f3", "emovo:f1", "emovo:m1"]
    );
    assert!(folds.iter().all(|fold| fold.test.len() == 98));
}

/// Names only: the loaders read labels and speakers from file names.
fn emodb_and_emovo_fixtures(root: &Path) {
    for speaker in ["03", "08", "09", "10"] {
        for (text, letter) in [("a01", 'W'), ("a02", 'L'), ("b01", 'N'), ("b03", 'T')] {
            util::write(root, &format!("emodb/wav/{speaker}{text}{letter}a.wav"), b"names only");
        }
    }
    for actor in ["f1", "m1", "m2"] {
        for emotion in ["gio", "neu", "sor"] {
            util::write(
                root,
                &format!("emovo/EMOVO/{actor}/{emotion}-{actor}-n1.wav"),
                b"names only",
            );
        }
    }
}

#[test]
fn emodb_and_emovo_layouts_are_recognised_and_pool_leave_one_corpus_out() {
    let dir = tempfile::tempdir().unwrap();
    emodb_and_emovo_fixtures(dir.path());
    let emodb = data::load(&dir.path().join("emodb"), DatasetKind::Auto).unwrap();
    assert_eq!((emodb.corpus, emodb.clips.len()), (Corpus::Emodb, 16));
    assert_eq!(emodb.clips.iter().filter(|c| c.label == "boredom").count(), 4);
    let emovo = data::load(&dir.path().join("emovo"), DatasetKind::Auto).unwrap();
    assert_eq!((emovo.corpus, emovo.clips.len()), (Corpus::Emovo, 9));
    assert_eq!(emovo.clips[0].speaker.as_deref(), Some("emovo:f1"));

    let loco = options(Protocol::LeaveOneCorpusOut);
    let one = folds::make_pooled_folds(&emodb.clips, &loco);
    assert_eq!(one, Err(FoldError::OneCorpus { corpus: "emodb".into() }));
    let pooled: Vec<_> = emodb.clips.iter().chain(&emovo.clips).cloned().collect();
    let folds = folds::make_pooled_folds(&pooled, &loco).unwrap();
    assert_eq!(folds.len(), 2);
    assert_eq!(
        (folds[0].train.len(), folds[0].test.len()),
        (9, 16),
        "emodb held out first"
    );
    assert!(folds[1].test.iter().all(|&i| pooled[i].corpus == Corpus::Emovo));
    assert_eq!(
        folds::make_pooled_folds(&pooled, &options(Protocol::SpeakerPairs)),
        Err(FoldError::PerCorpus {
            protocol: "speaker-pairs",
            corpora: 2
        })
    );
}
