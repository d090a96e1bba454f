//! Email addresses, parsed at the boundary: a pragmatic subset of RFC 5321
//! (what sign-up forms accept), case-insensitive for uniqueness.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Email(String);

impl Email {
    pub(crate) fn parse(raw: &str) -> Option<Email> {
        let email = raw.trim();
        let (local, domain) = email.rsplit_once('@')?;
        let local_ok = (1..=64).contains(&local.len())
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = email.len() <= 254
            && labels.len() >= 2
            && labels.iter().all(|label| {
                (1..=63).contains(&label.len())
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
            && labels
                .last()
                .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
        (local_ok && domain_ok).then(|| Email(email.to_ascii_lowercase()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Email;

    #[test]
    fn accepts_ordinary_addresses_and_lowercases_them() {
        for (raw, parsed) in [
            ("test@test.com", "test@test.com"),
            (
                "  First.Last+tag@Sub.Example.org ",
                "first.last+tag@sub.example.org",
            ),
            ("a_b-c@x-y.io", "a_b-c@x-y.io"),
        ] {
            assert_eq!(
                Email::parse(raw).map(|e| e.as_str().to_owned()),
                Some(parsed.to_owned()),
                "{raw}"
            );
        }
    }

    #[test]
    fn rejects_what_is_not_an_address() {
        for raw in [
            "",
            "plainaddress",
            "@no-local.com",
            "no-domain@",
            "a@b",
            "a@b.c",
            "a b@c.com",
            "a@b..com",
            ".a@b.com",
            "a.@b.com",
            "a..b@c.com",
            "a@-b.com",
            "a@b-.com",
            "a@b.c0m",
            "a@@b.com",
        ] {
            assert_eq!(Email::parse(raw), None, "{raw:?} should be rejected");
        }
    }
}
