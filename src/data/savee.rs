//! SAVEE (Haq & Jackson, 2009): flat `DC_a01.wav`, or `AudioData/DC/a01.wav`.
//!
//! Four male speakers (DC, JE, JK, KL); the emotion is the letters before the
//! two-digit sentence number.

use std::path::Path;

use super::{Clip, Corpus, Emotion, file_stem, look_up, parent_name};

/// SAVEE emotion codes.
const EMOTIONS: [(&str, Emotion); 7] = [
    ("a", Emotion::Angry),
    ("d", Emotion::Disgust),
    ("f", Emotion::Fear),
    ("h", Emotion::Happy),
    ("n", Emotion::Neutral),
    ("sa", Emotion::Sad),
    ("su", Emotion::Surprise),
];

const SPEAKERS: [&str; 4] = ["DC", "JE", "JK", "KL"];

/// Parses either SAVEE naming.
pub fn parse(path: &Path) -> Result<Clip, String> {
    let stem = file_stem(path)?;
    let (speaker, utterance) = match stem.split_once('_') {
        Some((speaker, utterance)) => (speaker, utterance),
        None => (parent_name(path).unwrap_or(""), stem),
    };
    if !SPEAKERS.contains(&speaker) {
        return Err(format!("not a SAVEE name: unknown speaker '{speaker}'"));
    }
    let split = utterance.find(|c: char| c.is_ascii_digit()).unwrap_or(utterance.len());
    let (code, number) = utterance.split_at(split);
    if number.len() != 2 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "not a SAVEE name: want <emotion code><two digits>, got '{utterance}'"
        ));
    }
    let emotion = look_up(&EMOTIONS, &code).ok_or_else(|| format!("unknown SAVEE emotion code '{code}'"))?;
    Ok(Clip::new(
        path,
        Corpus::Savee,
        Some(format!("savee:{speaker}")),
        emotion.as_str(),
        code,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts() {
        let flat = parse(Path::new("ALL/JK_sa12.wav")).unwrap();
        assert_eq!(
            (flat.label.as_str(), flat.speaker.as_deref()),
            ("sad", Some("savee:JK"))
        );
        let nested = parse(Path::new("AudioData/KL/su03.wav")).unwrap();
        assert_eq!(
            (nested.label.as_str(), nested.speaker.as_deref()),
            ("surprise", Some("savee:KL"))
        );
    }

    #[test]
    fn refuses_other_names() {
        assert!(parse(Path::new("XX_a01.wav")).is_err());
        assert!(parse(Path::new("DC_x01.wav")).unwrap_err().contains("emotion code"));
        assert!(parse(Path::new("DC_a1.wav")).is_err());
        assert!(parse(Path::new("music/a01.wav")).is_err());
    }
}
