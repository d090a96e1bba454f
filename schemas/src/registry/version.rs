//! Semver of an event type's schema, and the major version in a topic name.

use std::str::FromStr;

/// `major.minor.patch`; ordered numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SchemaVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl FromStr for SchemaVersion {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('.').collect();
        let number = |part: &str| {
            part.parse::<u32>()
                .map_err(|_| format!("version `{text}` is not major.minor.patch"))
        };
        match parts.as_slice() {
            [major, minor, patch] => Ok(Self {
                major: number(major)?,
                minor: number(minor)?,
                patch: number(patch)?,
            }),
            _ => Err(format!("version `{text}` is not major.minor.patch")),
        }
    }
}

/// `1` for `ticketing.orders.v1`; `None` without a `.v<n>` suffix.
pub fn major_of_topic(topic: &str) -> Option<u32> {
    topic.rsplit_once(".v")?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically_not_as_text() {
        let v = |s: &str| s.parse::<SchemaVersion>().map_err(|e| e.to_string());
        assert!(v("1.10.0") > v("1.9.3"));
        assert!(v("1.0").is_err());
        assert!(v("1.x.0").is_err());
    }

    #[test]
    fn the_major_version_comes_from_the_topic_suffix() {
        assert_eq!(major_of_topic("ticketing.orders.v1"), Some(1));
        assert_eq!(major_of_topic("ticketing.orders.v12"), Some(12));
        assert_eq!(major_of_topic("ticketing.orders"), None);
    }
}
