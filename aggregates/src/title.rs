//! Ticket titles.

use serde::{Deserialize, Serialize};

/// A trimmed, non-empty title of at most [`Title::MAX_CHARS`] characters,
/// without control characters.
///
/// Serialized as the bare string; deserializing re-checks it, except that
/// control characters in events stored before they were refused are
/// replaced (PostgreSQL's `text` cannot hold NUL, and a title that no read
/// model can store would stop its ticket's projection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Stored", into = "String")]
pub struct Title(String);

/// A title as stored in an event.
#[derive(Deserialize)]
#[serde(transparent)]
struct Stored(String);

/// Why a title was rejected; the messages are the HTTP API's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TitleError {
    /// Empty or only whitespace.
    #[error("Title is required")]
    Required,
    /// Longer than [`Title::MAX_CHARS`] after trimming.
    #[error("Title must be at most 200 characters")]
    TooLong,
    /// Holds a control character (NUL, a line break, an escape, ...).
    #[error("Title must not contain control characters")]
    Control,
}

impl Title {
    /// Counted in Unicode scalar values, not bytes.
    pub const MAX_CHARS: usize = 200;

    /// Trims surrounding whitespace, then validates.
    ///
    /// # Errors
    /// [`TitleError::Required`] if nothing is left after trimming,
    /// [`TitleError::TooLong`] above [`Title::MAX_CHARS`] characters,
    /// [`TitleError::Control`] if a control character is left.
    pub fn parse(raw: &str) -> Result<Title, TitleError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            Err(TitleError::Required)
        } else if trimmed.chars().count() > Self::MAX_CHARS {
            Err(TitleError::TooLong)
        } else if trimmed.chars().any(char::is_control) {
            Err(TitleError::Control)
        } else {
            Ok(Title(trimmed.to_owned()))
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Title {
    type Error = TitleError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Title::parse(&raw)
    }
}

impl TryFrom<Stored> for Title {
    type Error = TitleError;

    fn try_from(Stored(raw): Stored) -> Result<Self, Self::Error> {
        if raw.contains(char::is_control) {
            let replaced: String = raw
                .chars()
                .map(|c| {
                    if c.is_control() {
                        char::REPLACEMENT_CHARACTER
                    } else {
                        c
                    }
                })
                .collect();
            Title::parse(&replaced)
        } else {
            Title::parse(&raw)
        }
    }
}

impl From<Title> for String {
    fn from(title: Title) -> String {
        title.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_trims_and_keeps_valid_titles() {
        assert_eq!(Title::parse("concert").unwrap().as_str(), "concert");
        assert_eq!(Title::parse("  concert \n").unwrap().as_str(), "concert");
        let longest = "é".repeat(Title::MAX_CHARS);
        assert_eq!(Title::parse(&longest).unwrap().as_str(), longest);
        let padded = format!("  {}  ", "a".repeat(Title::MAX_CHARS));
        assert!(Title::parse(&padded).is_ok());
    }

    #[test]
    fn parse_rejects_missing_and_long_titles() {
        assert_eq!(Title::parse(""), Err(TitleError::Required));
        assert_eq!(Title::parse(" \t\n"), Err(TitleError::Required));
        let too_long = "a".repeat(Title::MAX_CHARS + 1);
        assert_eq!(Title::parse(&too_long), Err(TitleError::TooLong));
    }

    #[test]
    fn parse_rejects_control_characters_inside() {
        for raw in [
            "nul\u{0}title",
            "a\nb",
            "tab\tinside",
            "esc\u{1b}[31m",
            "del\u{7f}",
            "c1\u{85}x",
        ] {
            assert_eq!(Title::parse(raw), Err(TitleError::Control), "{raw:?}");
        }
        // Surrounding whitespace, control or not, is trimmed first.
        assert_eq!(Title::parse("\tconcert\n").unwrap().as_str(), "concert");
    }

    #[test]
    fn stored_control_characters_are_replaced_not_refused() {
        let title: Title = serde_json::from_str("\"nul\\u0000title\"").unwrap();
        assert_eq!(title.as_str(), "nul\u{fffd}title");
    }

    #[test]
    fn serde_is_the_string_and_revalidates() {
        let title = Title::parse("concert").unwrap();
        assert_eq!(serde_json::to_string(&title).unwrap(), "\"concert\"");
        assert_eq!(serde_json::from_str::<Title>("\"concert\"").unwrap(), title);
        assert!(serde_json::from_str::<Title>("\"  \"").is_err());
    }

    #[test]
    fn messages_match_the_api() {
        assert_eq!(TitleError::Required.to_string(), "Title is required");
        assert_eq!(
            TitleError::TooLong.to_string(),
            "Title must be at most 200 characters"
        );
    }
}
