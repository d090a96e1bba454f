//! Ticket titles.

use serde::{Deserialize, Serialize};

/// A trimmed, non-empty title of at most [`Title::MAX_CHARS`] characters.
///
/// Serialized as the bare string; deserializing re-checks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Title(String);

/// Why a title was rejected; the messages are the HTTP API's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TitleError {
    /// Empty or only whitespace.
    #[error("Title is required")]
    Required,
    /// Longer than [`Title::MAX_CHARS`] after trimming.
    #[error("Title must be at most 200 characters")]
    TooLong,
}

impl Title {
    /// Counted in Unicode scalar values, not bytes.
    pub const MAX_CHARS: usize = 200;

    /// Trims surrounding whitespace, then validates.
    ///
    /// # Errors
    /// [`TitleError::Required`] if nothing is left after trimming,
    /// [`TitleError::TooLong`] above [`Title::MAX_CHARS`] characters.
    pub fn parse(raw: &str) -> Result<Title, TitleError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            Err(TitleError::Required)
        } else if trimmed.chars().count() > Self::MAX_CHARS {
            Err(TitleError::TooLong)
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
