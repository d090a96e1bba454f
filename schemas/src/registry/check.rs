//! `ticketing schemas check`: the committed schemas against the Rust types
//! and against each other.
//!
//! Mode: **BACKWARD_TRANSITIVE**. Every version of an event type must read
//! every message written with *every* earlier version on the same topic
//! major version, not just the previous one: the event store keeps every
//! event forever and the replay tools (rebuild, republish) read it all
//! again, so the newest consumer meets the oldest message. FULL_TRANSITIVE
//! would also require old readers to accept new messages, which with closed
//! schemas forbids adding even an optional field (the `currency` that
//! ticket events gained); our consumers are tolerant readers (serde ignores
//! unknown fields) and are upgraded before producers publish a new version.

use std::fmt;

use crate::registry::compat::{backward_incompatibilities, Incompatibility};
use crate::registry::layout::relative_path;
use crate::registry::version::{major_of_topic, SchemaVersion};
use crate::registry::EventSchema;

/// The compatibility mode `check` enforces (Confluent's name).
pub const COMPATIBILITY_MODE: &str = "BACKWARD_TRANSITIVE";

/// Why `check` fails.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// The Rust types no longer produce the committed file of their
    /// current version.
    Drift { path: String },
    /// The Rust types define a version that is not committed.
    Missing { path: String },
    /// A committed event type no longer exists in the Rust types: messages
    /// of that type already on the topic could not be read.
    EventTypeRemoved { topic: String, event_type: String },
    /// The current version is older than a committed one.
    VersionBehind {
        topic: String,
        event_type: String,
        version: String,
        committed: String,
    },
    /// A version (or file name) that is not semver with the topic's major.
    BadVersion { path: String, reason: String },
    /// The new version rejects messages an earlier one accepted.
    Incompatible {
        topic: String,
        event_type: String,
        version: String,
        against: String,
        incompatibility: Incompatibility,
    },
    /// A schema `json-schema-diff` could not parse.
    Unreadable { path: String, reason: String },
}

/// Every problem of `committed` (the schema folder) given `generated` (the
/// Rust types); empty means the check passes.
pub fn check(generated: &[EventSchema], committed: &[EventSchema]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for current in generated {
        problems.extend(check_event_type(current, committed));
    }
    for old in committed {
        let still_defined = generated
            .iter()
            .any(|g| g.topic == old.topic && g.event_type == old.event_type);
        let already_reported = problems.iter().any(|p| matches!(p, Problem::EventTypeRemoved { topic, event_type } if *topic == old.topic && *event_type == old.event_type));
        if !still_defined && !already_reported {
            problems.push(Problem::EventTypeRemoved {
                topic: old.topic.clone(),
                event_type: old.event_type.clone(),
            });
        }
    }
    problems
}

fn check_event_type(current: &EventSchema, committed: &[EventSchema]) -> Vec<Problem> {
    let path = relative_path(current);
    let version = match checked_version(current) {
        Ok(version) => version,
        Err(reason) => return vec![Problem::BadVersion { path, reason }],
    };
    let mut problems = Vec::new();
    match committed.iter().find(|c| same_version(c, current)) {
        Some(file) if file.schema != current.schema => problems.push(Problem::Drift { path }),
        Some(_) => {}
        None => problems.push(Problem::Missing { path }),
    }
    let earlier = committed
        .iter()
        .filter(|c| c.topic == current.topic && c.event_type == current.event_type);
    for old in earlier {
        let old_version = match checked_version(old) {
            Ok(v) => v,
            Err(reason) => {
                problems.push(Problem::BadVersion {
                    path: relative_path(old),
                    reason,
                });
                continue;
            }
        };
        if old_version > version {
            problems.push(Problem::VersionBehind {
                topic: current.topic.clone(),
                event_type: current.event_type.clone(),
                version: current.version.clone(),
                committed: old.version.clone(),
            });
        } else if old_version < version {
            problems.extend(compare(old, current));
        }
    }
    problems
}

fn compare(old: &EventSchema, current: &EventSchema) -> Vec<Problem> {
    match backward_incompatibilities(&old.schema, &current.schema) {
        Ok(found) => found
            .into_iter()
            .map(|incompatibility| Problem::Incompatible {
                topic: current.topic.clone(),
                event_type: current.event_type.clone(),
                version: current.version.clone(),
                against: old.version.clone(),
                incompatibility,
            })
            .collect(),
        Err(error) => vec![Problem::Unreadable {
            path: relative_path(old),
            reason: error.to_string(),
        }],
    }
}

fn same_version(a: &EventSchema, b: &EventSchema) -> bool {
    a.topic == b.topic && a.event_type == b.event_type && a.version == b.version
}

/// The version, if it is semver and its major is the topic's.
fn checked_version(schema: &EventSchema) -> Result<SchemaVersion, String> {
    let version: SchemaVersion = schema.version.parse()?;
    let topic_major = major_of_topic(&schema.topic)
        .ok_or_else(|| format!("topic {} does not end in .v<major>", schema.topic))?;
    if version.major != topic_major {
        return Err(format!(
            "version {} on {}: the major version must be the topic's ({topic_major})",
            schema.version, schema.topic
        ));
    }
    Ok(version)
}

/// The next topic name for an incompatible change, e.g. `ticketing.orders.v2`.
fn next_major_topic(topic: &str) -> String {
    match (major_of_topic(topic), topic.rsplit_once(".v")) {
        (Some(major), Some((base, _))) => format!("{base}.v{}", major + 1),
        _ => format!("{topic}.v2"),
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Drift { path } => write!(
                f,
                "{path}: the Rust types no longer produce this committed schema. \
                 A committed version is immutable: bump the event's version \
                 (`WireEvent::version_of`, minor for a compatible change), then run \
                 `ticketing schemas generate` and commit the new file"
            ),
            Problem::Missing { path } => write!(
                f,
                "{path}: not committed; run `ticketing schemas generate` and commit it"
            ),
            Problem::EventTypeRemoved { topic, event_type } => write!(
                f,
                "{topic}: event type {event_type} was removed, but messages of that type \
                 are on the topic; keep it, or move to a new topic major version \
                 (e.g. {})",
                next_major_topic(topic)
            ),
            Problem::VersionBehind {
                topic,
                event_type,
                version,
                committed,
            } => write!(
                f,
                "{topic} {event_type}: version {version} is older than the committed \
                 {committed}; versions only move forward"
            ),
            Problem::BadVersion { path, reason } => write!(f, "{path}: {reason}"),
            Problem::Incompatible {
                topic,
                event_type,
                version,
                against,
                incompatibility,
            } => write!(
                f,
                "{topic} {event_type} {version} is incompatible with committed {against} \
                 ({COMPATIBILITY_MODE}): field `{}`: {} ({}). An incompatible change \
                 needs a new topic major version, e.g. {}",
                incompatibility.field,
                incompatibility.rule.describe(),
                incompatibility.detail,
                next_major_topic(topic)
            ),
            Problem::Unreadable { path, reason } => write!(f, "{path}: {reason}"),
        }
    }
}
