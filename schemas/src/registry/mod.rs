//! The schema registry kept in git: JSON Schemas generated from the wire
//! types, committed under `schemas/<topic>/<eventType>/<version>.json`, and
//! the compatibility check CI runs on them (`ticketing schemas check`).

pub mod asyncapi;
mod catalog;
mod check;
mod compat;
mod layout;
mod version;

pub use catalog::{generate, topic_schemas, CatalogError, EventSchema};
pub use check::{check, Problem, COMPATIBILITY_MODE};
pub use compat::{backward_incompatibilities, CompareError, Incompatibility, Rule};
pub use layout::{read_committed, relative_path, to_text, write_generated, LayoutError};
pub use version::{major_of_topic, SchemaVersion};

#[cfg(test)]
mod tests;
