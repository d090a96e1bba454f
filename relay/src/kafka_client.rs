//! The one base configuration of every Kafka client (producer, consumer,
//! admin): bootstrap servers, security, and the operator's pass-through
//! librdkafka properties. Each client adds its role's settings in between;
//! the operator's properties go last, so any of them can be overridden.

use std::fmt;
use std::path::PathBuf;

use rdkafka::error::KafkaError;
use rdkafka::producer::BaseProducer;
use rdkafka::ClientConfig;

/// librdkafka properties given by the operator (security settings first,
/// then the pass-through), applied to every client after its own settings.
/// Debug output hides secret values, so a logged config leaks nothing.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties(Vec<(String, String)>);

impl KafkaProperties {
    /// The security settings as librdkafka properties; unset ones are left
    /// to librdkafka's defaults (plaintext).
    pub fn from_security(security: &KafkaSecurity) -> Self {
        let mut properties = Self::default();
        let paths = |path: &Option<PathBuf>| path.as_ref().map(|p| p.display().to_string());
        let settings = [
            ("security.protocol", security.protocol.clone()),
            ("sasl.mechanism", security.sasl_mechanism.clone()),
            ("sasl.username", security.sasl_username.clone()),
            ("sasl.password", security.sasl_password.clone()),
            ("ssl.ca.location", paths(&security.ssl_ca_location)),
            (
                "ssl.certificate.location",
                paths(&security.ssl_certificate_location),
            ),
            ("ssl.key.location", paths(&security.ssl_key_location)),
        ];
        for (key, value) in settings {
            if let Some(value) = value {
                properties.push(key, value);
            }
        }
        properties
    }

    /// Adds a property; a later one with the same key wins.
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.push((key.into(), value.into()));
    }

    pub fn extend(&mut self, properties: impl IntoIterator<Item = (String, String)>) {
        self.0.extend(properties);
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value a client gets for `key` (the last one set).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, String)> for KafkaProperties {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(k, v)| (k, if is_secret(k) { "<redacted>" } else { v })),
            )
            .finish()
    }
}

/// Whether a property's value must never be shown.
pub fn is_secret(key: &str) -> bool {
    key.contains("password")
        || key.contains("secret")
        || key.contains("jaas")
        || key == "ssl.key.pem"
        || key == "sasl.oauthbearer.config"
}

/// The usual security settings, by meaning; see [`KafkaProperties::from_security`].
#[derive(Clone, Default)]
pub struct KafkaSecurity {
    /// plaintext, ssl, sasl_plaintext or sasl_ssl.
    pub protocol: Option<String>,
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
    /// PEM file of the CA(s) the brokers' certificates are checked against.
    pub ssl_ca_location: Option<PathBuf>,
    /// Client certificate and key, for mutual TLS.
    pub ssl_certificate_location: Option<PathBuf>,
    pub ssl_key_location: Option<PathBuf>,
}

impl fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        KafkaProperties::from_security(self).fmt(f)
    }
}

/// Why the operator's Kafka settings cannot be used. Never holds a value
/// of a secret property.
#[derive(Debug, thiserror::Error)]
pub enum KafkaConfigError {
    #[error("malformed Kafka property (entry {entry}): expected key=value")]
    Malformed { entry: usize },
    #[error("invalid Kafka client property `{key}`: {reason}")]
    Property { key: String, reason: String },
    #[error("cannot create a Kafka client with these settings: {0}")]
    Client(String),
}

/// Parses `key=value,key=value`. A value may hold commas (librdkafka lists,
/// e.g. `debug=broker,topic`): a piece without `=` continues the previous
/// value.
pub fn parse_property_list(text: &str) -> Result<Vec<(String, String)>, KafkaConfigError> {
    let mut properties: Vec<(String, String)> = Vec::new();
    for (index, piece) in text.split(',').enumerate() {
        if piece.trim().is_empty() {
            continue;
        }
        match (piece.split_once('='), properties.last_mut()) {
            (Some((key, value)), _) => properties.push(entry(key, value, index + 1)?),
            (None, Some((_, value))) => {
                value.push(',');
                value.push_str(piece);
            }
            (None, None) => return Err(KafkaConfigError::Malformed { entry: index + 1 }),
        }
    }
    Ok(properties)
}

/// Parses a properties file: one `key=value` per line, blank lines and
/// lines starting with `#` ignored.
pub fn parse_property_file(text: &str) -> Result<Vec<(String, String)>, KafkaConfigError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim();
            !line.is_empty() && !line.starts_with('#')
        })
        .map(|(index, line)| {
            let (key, value) = line
                .split_once('=')
                .ok_or(KafkaConfigError::Malformed { entry: index + 1 })?;
            entry(key, value, index + 1)
        })
        .collect()
}

fn entry(key: &str, value: &str, index: usize) -> Result<(String, String), KafkaConfigError> {
    let key = key.trim();
    if key.is_empty() {
        return Err(KafkaConfigError::Malformed { entry: index });
    }
    Ok((key.to_owned(), value.trim().to_owned()))
}

/// The configuration of one client: bootstrap servers, then what `role`
/// sets (acks, group id, ...), then the operator's properties.
pub fn client_config(
    brokers: &str,
    properties: &KafkaProperties,
    role: impl FnOnce(&mut ClientConfig),
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    role(&mut config);
    for (key, value) in properties.iter() {
        config.set(key, value);
    }
    config
}

/// Creates (and drops) a client with the base configuration, so that an
/// unknown property, an invalid value or an unreadable certificate fails at
/// start-up, naming the property. librdkafka checks names and values when
/// they are set and loads certificates when the client is created; it
/// connects lazily, so this needs no broker.
pub fn check_client_config(
    brokers: &str,
    properties: &KafkaProperties,
) -> Result<(), KafkaConfigError> {
    let config = client_config(brokers, properties, |_| {});
    match config.create::<BaseProducer>() {
        Ok(_) => Ok(()),
        Err(error) => Err(config_error(error)),
    }
}

/// Drops the value librdkafka echoes in its error when the key is secret.
fn config_error(error: KafkaError) -> KafkaConfigError {
    match error {
        KafkaError::ClientConfig(_, _, key, _) if is_secret(&key) => KafkaConfigError::Property {
            key,
            reason: "rejected by librdkafka (value hidden)".to_owned(),
        },
        KafkaError::ClientConfig(_, reason, key, _) => KafkaConfigError::Property { key, reason },
        KafkaError::ClientCreation(reason) => KafkaConfigError::Client(reason),
        other => KafkaConfigError::Client(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl_ssl() -> KafkaSecurity {
        KafkaSecurity {
            protocol: Some("sasl_ssl".to_owned()),
            sasl_mechanism: Some("SCRAM-SHA-512".to_owned()),
            sasl_username: Some("ticketing".to_owned()),
            sasl_password: Some("hunter2".to_owned()),
            ssl_ca_location: Some(PathBuf::from("/etc/kafka-ca/ca.crt")),
            ..KafkaSecurity::default()
        }
    }

    #[test]
    fn sasl_settings_become_librdkafka_properties_in_every_client() {
        let properties = KafkaProperties::from_security(&sasl_ssl());
        let config = client_config("kafka:9093", &properties, |c| {
            c.set("acks", "all");
        });
        assert_eq!(config.get("bootstrap.servers"), Some("kafka:9093"));
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.username"), Some("ticketing"));
        assert_eq!(config.get("sasl.password"), Some("hunter2"));
        assert_eq!(config.get("ssl.ca.location"), Some("/etc/kafka-ca/ca.crt"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("ssl.key.location"), None);
    }

    #[test]
    fn sasl_configuration_is_accepted_by_librdkafka() -> Result<(), KafkaConfigError> {
        // SASL over plaintext, so that no CA file is needed: librdkafka
        // accepts the mechanism only if it was built with SASL support.
        for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
            let properties = KafkaProperties::from_security(&KafkaSecurity {
                protocol: Some("sasl_plaintext".to_owned()),
                sasl_mechanism: Some(mechanism.to_owned()),
                sasl_username: Some("u".to_owned()),
                sasl_password: Some("p".to_owned()),
                ..KafkaSecurity::default()
            });
            check_client_config("127.0.0.1:1", &properties)?;
        }
        Ok(())
    }

    #[test]
    fn pass_through_comes_last_and_overrides_the_role() -> Result<(), KafkaConfigError> {
        let mut properties = KafkaProperties::from_security(&sasl_ssl());
        properties.extend(parse_property_list("acks=1,debug=broker,topic,")?);
        let config = client_config("k:9093", &properties, |c| {
            c.set("acks", "all");
        });
        assert_eq!(config.get("acks"), Some("1"));
        assert_eq!(config.get("debug"), Some("broker,topic"));
        Ok(())
    }

    #[test]
    fn property_file_skips_comments_and_blank_lines() -> Result<(), KafkaConfigError> {
        let parsed = parse_property_file("# managed cluster\n\nclient.rack = eu-1a\nssl.endpoint.identification.algorithm=none\n")?;
        assert_eq!(
            parsed,
            vec![
                ("client.rack".to_owned(), "eu-1a".to_owned()),
                (
                    "ssl.endpoint.identification.algorithm".to_owned(),
                    "none".to_owned()
                ),
            ]
        );
        assert!(matches!(
            parse_property_file("a=b\nnonsense\n"),
            Err(KafkaConfigError::Malformed { entry: 2 })
        ));
        Ok(())
    }

    #[test]
    fn unknown_property_fails_naming_it() {
        let properties: KafkaProperties = [("no.such.property".to_owned(), "1".to_owned())]
            .into_iter()
            .collect();
        let error = check_client_config("127.0.0.1:1", &properties)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("no.such.property"), "{error}");
    }

    #[test]
    fn invalid_value_fails_naming_the_property() {
        let properties = KafkaProperties::from_security(&KafkaSecurity {
            protocol: Some("tls".to_owned()),
            ..KafkaSecurity::default()
        });
        let error = check_client_config("127.0.0.1:1", &properties)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("security.protocol"), "{error}");
    }

    #[test]
    fn missing_ca_file_fails_at_start_up() {
        let properties = KafkaProperties::from_security(&KafkaSecurity {
            protocol: Some("ssl".to_owned()),
            ssl_ca_location: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..KafkaSecurity::default()
        });
        assert!(check_client_config("127.0.0.1:1", &properties).is_err());
    }

    #[test]
    fn secrets_are_hidden_from_debug_output() {
        let shown = format!("{:?}", sasl_ssl());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("ticketing"), "{shown}");
    }
}
