//! Any folder of labelled audio: `<label>/<file>` or `<label>/<speaker>/<file>`.
//!
//! Without the speaker level nobody knows who speaks, so such clips get no
//! speaker and speaker-independent folds refuse them (use a manifest instead).

use std::path::{Component, Path};

use super::{Clip, Corpus, Emotion};

/// Reads label (and speaker) from the folders between `root` and the file.
pub fn parse(root: &Path, path: &Path) -> Result<Clip, String> {
    let relative = path
        .strip_prefix(root)
        .map_err(|_| "file is outside the corpus root".to_owned())?;
    let folders: Vec<&str> = relative
        .parent()
        .into_iter()
        .flat_map(Path::components)
        .filter_map(|component| match component {
            Component::Normal(name) => name.to_str(),
            _ => None,
        })
        .collect();
    let (native, speaker) = match folders[..] {
        [label] => (label, None),
        [label, speaker] => (label, Some(format!("folder:{speaker}"))),
        [] => return Err("file is directly in the root; want <label>/<file>".into()),
        _ => return Err("too deep; want <label>/<file> or <label>/<speaker>/<file>".into()),
    };
    let label = match Emotion::from_name(native) {
        Some(emotion) => emotion.as_str().to_owned(),
        None => native.to_lowercase(),
    };
    Ok(Clip {
        path: path.to_owned(),
        corpus: Corpus::Folder,
        speaker,
        label,
        native_label: native.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_and_optional_speaker() {
        let root = Path::new("/corpus");
        let clip = parse(root, Path::new("/corpus/Happy/anna/x.wav")).unwrap();
        assert_eq!(
            (clip.label.as_str(), clip.speaker.as_deref()),
            ("happy", Some("folder:anna"))
        );
        let clip = parse(root, Path::new("/corpus/Excited/x.wav")).unwrap();
        assert_eq!((clip.label.as_str(), clip.speaker), ("excited", None));
        assert!(parse(root, Path::new("/corpus/x.wav")).is_err());
        assert!(parse(root, Path::new("/corpus/a/b/c/x.wav")).is_err());
    }
}
