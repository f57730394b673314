//! TESS (Dupuis & Pichora-Fuller, 2010): `<SPK>_<emotion>/<SPK>_<word>_<emotion>.wav`.
//!
//! Two speakers, OAF and YAF. The release's folder names are inconsistent in
//! case and spelling (`OAF_Pleasant_surprise`, `YAF_pleasant_surprised`), and
//! one file is named `OA_bite_neutral`: the folder is the authority for the
//! speaker, and file and folder must agree on the emotion.

use std::path::Path;

use super::{Clip, Corpus, Emotion, file_stem, look_up, parent_name};

/// TESS emotion names, as the last field of the file name.
const EMOTIONS: [(&str, Emotion); 7] = [
    ("angry", Emotion::Angry),
    ("disgust", Emotion::Disgust),
    ("fear", Emotion::Fear),
    ("happy", Emotion::Happy),
    ("neutral", Emotion::Neutral),
    ("ps", Emotion::Surprise),
    ("sad", Emotion::Sad),
];

const SPEAKERS: [&str; 2] = ["OAF", "YAF"];

/// Parses a TESS file name, cross-checked with its folder name.
pub fn parse(path: &Path) -> Result<Clip, String> {
    let stem = file_stem(path)?;
    let fields: Vec<&str> = stem.split('_').collect();
    if fields.len() < 3 {
        return Err("not a TESS name (want <speaker>_<word>_<emotion>)".into());
    }
    let native = fields[fields.len() - 1].to_ascii_lowercase();
    let emotion = look_up(&EMOTIONS, &native.as_str()).ok_or_else(|| format!("unknown TESS emotion '{native}'"))?;
    let file_speaker = fields[0].to_ascii_uppercase();
    let speaker = match parent_name(path).and_then(|folder| folder.split_once('_')) {
        Some((folder_speaker, folder_emotion)) if is_speaker(folder_speaker) => {
            if Emotion::from_name(folder_emotion) != Some(emotion) {
                return Err(format!("file says '{native}' but its folder says '{folder_emotion}'"));
            }
            folder_speaker.to_ascii_uppercase()
        }
        _ if is_speaker(&file_speaker) => file_speaker,
        _ => return Err(format!("unknown TESS speaker '{}'", fields[0])),
    };
    Ok(Clip::new(
        path,
        Corpus::Tess,
        Some(format!("tess:{speaker}")),
        emotion.as_str(),
        &native,
    ))
}

fn is_speaker(name: &str) -> bool {
    SPEAKERS.iter().any(|s| s.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_variants_and_the_oa_quirk() {
        let clip = parse(Path::new("TESS/OAF_Pleasant_surprise/OAF_back_ps.flac")).unwrap();
        assert_eq!((clip.label.as_str(), clip.native_label.as_str()), ("surprise", "ps"));
        let clip = parse(Path::new("TESS/YAF_pleasant_surprised/YAF_back_ps.wav")).unwrap();
        assert_eq!(clip.speaker.as_deref(), Some("tess:YAF"));
        let clip = parse(Path::new("TESS/OAF_neutral/OA_bite_neutral.wav")).unwrap();
        assert_eq!(clip.speaker.as_deref(), Some("tess:OAF"));
        let clip = parse(Path::new("TESS/OAF_Fear/OAF_food_fear.wav")).unwrap();
        assert_eq!(clip.label, "fear");
    }

    #[test]
    fn file_and_folder_must_agree() {
        assert!(
            parse(Path::new("OAF_Sad/OAF_back_happy.wav"))
                .unwrap_err()
                .contains("folder")
        );
        assert!(parse(Path::new("XYZ_back_happy.wav")).unwrap_err().contains("speaker"));
        assert!(parse(Path::new("OAF_back_bored.wav")).unwrap_err().contains("emotion"));
    }
}
