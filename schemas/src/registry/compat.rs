//! Is a new schema version compatible with an older one? BACKWARD, in
//! Confluent Schema Registry's terms: a consumer on the new schema must read
//! every message written with the old one.
//!
//! The structural diff is `json-schema-diff`'s; this module classifies its
//! changes into the rules we enforce and adds what it does not see:
//! - a removed field breaks even where the old schema allowed unknown
//!   fields (the diff only flags it under `additionalProperties: false`);
//! - a new required field with a `default` does not break (the reader fills
//!   it in), one without does; an existing optional field made required
//!   always breaks (the diff calls both "required added");
//! - an enum written as `oneOf` constants (what schemars emits when the
//!   variants carry doc comments) is narrowed like a plain `enum` (the diff
//!   does not look into `oneOf`).

use serde_json::{Map, Value};

/// The compatibility rule a change breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A field that old messages carry is gone (or was renamed).
    FieldRemoved,
    /// A field that old messages may omit is now required.
    OptionalMadeRequired,
    /// A new required field without a default: old messages lack it.
    RequiredFieldWithoutDefault,
    /// A JSON type old messages may use is no longer accepted.
    TypeChanged,
    /// An enum value old messages may carry is no longer accepted.
    EnumNarrowed,
    /// Any other constraint that rejects values old messages may carry
    /// (format, range, pattern, length, constant).
    ConstraintNarrowed,
}

impl Rule {
    pub fn describe(self) -> &'static str {
        match self {
            Rule::FieldRemoved => "field removed or renamed",
            Rule::OptionalMadeRequired => "optional field made required",
            Rule::RequiredFieldWithoutDefault => "new required field without a default",
            Rule::TypeChanged => "type changed",
            Rule::EnumNarrowed => "enum narrowed",
            Rule::ConstraintNarrowed => "constraint narrowed",
        }
    }
}

/// One change that makes the new schema reject data the old one accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// Dotted path of the field, e.g. `data.ticket.priceCents`.
    pub field: String,
    pub rule: Rule,
    /// What exactly changed, e.g. `"integer" no longer accepted`.
    pub detail: String,
}

/// A schema that `json-schema-diff` could not read.
#[derive(Debug, thiserror::Error)]
#[error("cannot compare schemas: {0}")]
pub struct CompareError(#[from] json_schema_diff::Error);

/// Every way `new` rejects data that `old` accepted (BACKWARD); empty when
/// the change is compatible.
pub fn backward_incompatibilities(
    old: &Value,
    new: &Value,
) -> Result<Vec<Incompatibility>, CompareError> {
    let (old, new) = (normalized(old), normalized(new));
    let changes = json_schema_diff::diff(old.clone(), new.clone())?;
    Ok(changes
        .into_iter()
        .filter_map(|change| classify(&old, &new, change))
        .collect())
}

fn classify(old: &Value, new: &Value, change: json_schema_diff::Change) -> Option<Incompatibility> {
    use json_schema_diff::ChangeKind as K;
    let at = |name: &str| join(&change.path, name);
    let (field, rule, detail) = match change.change {
        K::PropertyRemove { removed, .. } => (
            at(&removed),
            Rule::FieldRemoved,
            "no longer in the schema".into(),
        ),
        K::RequiredAdd { property } => {
            let field = at(&property);
            if has_property(old, &change.path, &property) {
                (field, Rule::OptionalMadeRequired, "now required".into())
            } else if property_schema(new, &change.path, &property)
                .is_some_and(|schema| schema.get("default").is_some())
            {
                return None;
            } else {
                (
                    field,
                    Rule::RequiredFieldWithoutDefault,
                    "required, and old messages do not have it".into(),
                )
            }
        }
        K::TypeRemove { removed } => (
            display_path(&change.path),
            Rule::TypeChanged,
            format!("{} no longer accepted", json(&removed)),
        ),
        K::EnumRemove {
            removed,
            rhs_has_no_enum: false,
        } => (
            display_path(&change.path),
            Rule::EnumNarrowed,
            format!("value {removed} no longer accepted"),
        ),
        other if other.is_breaking() => (
            display_path(&change.path),
            Rule::ConstraintNarrowed,
            format!("{other:?}"),
        ),
        _ => return None,
    };
    Some(Incompatibility {
        field,
        rule,
        detail,
    })
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "?".into())
}

/// The diff's paths look like `.data.ticket` (`<anyOf:n>` and `?` for
/// subschemas); ours like `data.ticket`.
fn display_path(path: &str) -> String {
    let trimmed = path.trim_start_matches('.');
    if trimmed.is_empty() {
        "(root)".to_owned()
    } else {
        trimmed.to_owned()
    }
}

fn join(path: &str, name: &str) -> String {
    let parent = path.trim_start_matches('.');
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// The schema of object `path` (a diff path), following `properties` only.
fn object_at<'a>(schema: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .filter(|segment| !segment.is_empty())
        .try_fold(schema, |schema, segment| {
            schema.get("properties").and_then(|p| p.get(segment))
        })
}

fn property_schema<'a>(schema: &'a Value, path: &str, property: &str) -> Option<&'a Value> {
    object_at(schema, path)
        .and_then(|object| object.get("properties"))
        .and_then(|properties| properties.get(property))
}

fn has_property(schema: &Value, path: &str, property: &str) -> bool {
    property_schema(schema, path, property).is_some()
}

/// Rewrites what the diff does not understand into what it does: a `oneOf`
/// of constants becomes an `enum`, and every object is closed so removals
/// always show.
fn normalized(schema: &Value) -> Value {
    let mut schema = schema.clone();
    normalize(&mut schema);
    schema
}

fn normalize(value: &mut Value) {
    match value {
        Value::Object(object) => {
            one_of_constants_as_enum(object);
            if object.contains_key("properties") {
                let _ = object.insert("additionalProperties".into(), Value::Bool(false));
            }
            object.values_mut().for_each(normalize);
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn one_of_constants_as_enum(object: &mut Map<String, Value>) {
    let constants: Option<Vec<Value>> =
        object
            .get("oneOf")
            .and_then(Value::as_array)
            .and_then(|variants| {
                variants
                    .iter()
                    .map(|variant| variant.get("const").cloned())
                    .collect()
            });
    if let Some(constants) = constants {
        let _ = object.remove("oneOf");
        let _ = object.insert("enum".into(), Value::Array(constants));
    }
}
