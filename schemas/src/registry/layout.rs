//! The committed schema folder: `<topic>/<eventType>/<version>.json`, e.g.
//! `ticketing.tickets.v1/TicketCreated/1.1.0.json`. The only file I/O of
//! this crate, for the `ticketing schemas` commands.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::registry::EventSchema;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not JSON")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is committed and differs from what the Rust types generate now; a committed \
         version is immutable: bump the event's version (`WireEvent::version_of`) and generate \
         again (or pass --overwrite if this version was never merged)"
    )]
    WouldOverwrite { path: PathBuf },
}

/// Where `schema` lives, relative to the schema folder.
pub fn relative_path(schema: &EventSchema) -> String {
    format!(
        "{}/{}/{}.json",
        schema.topic, schema.event_type, schema.version
    )
}

/// Every `<topic>/<eventType>/<version>.json` under `root`, sorted by path.
/// Other files and folders (the crate's sources) are ignored.
pub fn read_committed(root: &Path) -> Result<Vec<EventSchema>, LayoutError> {
    let mut schemas = Vec::new();
    for topic in sorted_entries(root)? {
        let Some(topic_name) = dir_name(&topic).filter(|n| n.contains(".v")) else {
            continue;
        };
        for event_type in sorted_entries(&topic)? {
            let Some(event_name) = dir_name(&event_type) else {
                continue;
            };
            for file in sorted_entries(&event_type)? {
                let Some(version) = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".json"))
                else {
                    continue;
                };
                schemas.push(EventSchema {
                    topic: topic_name.clone(),
                    event_type: event_name.clone(),
                    version: version.to_owned(),
                    schema: read_json(&file)?,
                });
            }
        }
    }
    Ok(schemas)
}

/// Writes each schema where it belongs; returns the paths written. A
/// committed file with other content is only replaced when `overwrite`.
pub fn write_generated(
    root: &Path,
    schemas: &[EventSchema],
    overwrite: bool,
) -> Result<Vec<PathBuf>, LayoutError> {
    let mut written = Vec::new();
    for schema in schemas {
        let path = root.join(relative_path(schema));
        let text = to_text(&schema.schema);
        match std::fs::read_to_string(&path) {
            Ok(existing) if existing == text => continue,
            Ok(_) if !overwrite => return Err(LayoutError::WouldOverwrite { path }),
            _ => {}
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| LayoutError::Write {
                path: parent.to_owned(),
                source,
            })?;
        }
        std::fs::write(&path, text).map_err(|source| LayoutError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// Pretty JSON with a final newline, so diffs in review stay readable.
pub fn to_text(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

fn read_json(path: &Path) -> Result<Value, LayoutError> {
    let text = std::fs::read_to_string(path).map_err(|source| LayoutError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| LayoutError::Parse {
        path: path.to_owned(),
        source,
    })
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, LayoutError> {
    let read_error = |source| LayoutError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(read_error)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    entries.sort();
    Ok(entries)
}

fn dir_name(path: &Path) -> Option<String> {
    path.is_dir()
        .then(|| path.file_name()?.to_str().map(str::to_owned))
        .flatten()
}
