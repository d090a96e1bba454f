//! The JSON Schemas the Rust wire types define today, one per topic, event
//! type and current version.
//!
//! Each schema describes one whole Kafka message of that event type: the
//! envelope's fields with `eventType` fixed and `data` the payload. They are
//! cut out of the schema of `Envelope<E>` for each topic's event enum, so a
//! variant added to an enum is picked up without touching this file.

use schemars::generate::SchemaSettings;
use schemars::transform::{RecursiveTransform, Transform};
use schemars::JsonSchema;
use serde_json::{Map, Value};

use crate::{topics, Envelope, OrderEventV1, PaymentEventV1, TicketEventV1, WireEvent};

/// One committed (or to be committed) schema: a version of one event type
/// on one topic.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSchema {
    /// Topic name with its major version, e.g. `ticketing.orders.v1`.
    pub topic: String,
    pub event_type: String,
    /// Semver of the payload, the envelope's `schemaVersion`.
    pub version: String,
    pub schema: Value,
}

/// The generator's output did not have the shape this module cuts up.
#[derive(Debug, thiserror::Error)]
#[error("cannot split the schema of the {topic} envelope: {reason}")]
pub struct CatalogError {
    topic: String,
    reason: &'static str,
}

/// Every event type of every topic at its current version, in a stable
/// order (topic, then declaration order).
pub fn generate() -> Result<Vec<EventSchema>, CatalogError> {
    let mut schemas = topic_schemas::<TicketEventV1>(topics::TICKETS)?;
    schemas.extend(topic_schemas::<OrderEventV1>(topics::ORDERS)?);
    schemas.extend(topic_schemas::<PaymentEventV1>(topics::PAYMENTS)?);
    Ok(schemas)
}

/// One schema per variant of `E`, each the envelope with that variant's
/// `eventType` and `data`.
pub fn topic_schemas<E>(topic: &str) -> Result<Vec<EventSchema>, CatalogError>
where
    E: WireEvent + JsonSchema,
{
    let error = |reason| CatalogError {
        topic: topic.to_owned(),
        reason,
    };
    let mut root = generator_settings()
        .into_generator()
        .into_root_schema_for::<Envelope<E>>()
        .to_value();
    let object = root.as_object_mut().ok_or_else(|| error("not an object"))?;
    let variants = match object.remove("oneOf") {
        Some(Value::Array(variants)) => variants,
        _ => return Err(error("no oneOf of event types")),
    };
    let base_properties = object
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let base_required = object
        .get("required")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    variants
        .into_iter()
        .map(|variant| {
            let event_type = variant
                .pointer("/properties/eventType/const")
                .and_then(Value::as_str)
                .ok_or_else(|| error("a variant without a constant eventType"))?
                .to_owned();
            let mut properties = base_properties.clone();
            for (name, schema) in variant
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let _previous = properties.insert(name.clone(), schema.clone());
            }
            let mut required = base_required.clone();
            required.extend(
                variant
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
            let mut schema = object.clone();
            let _ = schema.insert("title".into(), Value::String(event_type.clone()));
            let _ = schema.insert("properties".into(), Value::Object(properties));
            let _ = schema.insert("required".into(), Value::Array(required));
            let mut schema = Value::Object(schema);
            closed_objects(&mut schema);
            Ok(EventSchema {
                topic: topic.to_owned(),
                version: E::version_of(&event_type).to_owned(),
                event_type,
                schema,
            })
        })
        .collect()
}

/// Draft 07 (what `json-schema-diff` reads) with every subschema inlined,
/// so each file stands alone and diffs without resolving references.
fn generator_settings() -> SchemaSettings {
    let mut settings = SchemaSettings::draft07();
    settings.inline_subschemas = true;
    settings
}

/// Sets `additionalProperties: false` on every object schema: the schemas
/// list every field, so a field that disappears is a change the diff sees
/// (data carrying it would no longer validate).
fn closed_objects(schema: &mut Value) {
    let mut transform = RecursiveTransform(|schema: &mut schemars::Schema| {
        if let Some(object) = schema.as_object_mut() {
            close(object);
        }
    });
    if let Ok(mut typed) = schemars::Schema::try_from(schema.clone()) {
        transform.transform(&mut typed);
        *schema = typed.to_value();
    }
}

fn close(object: &mut Map<String, Value>) {
    if object.contains_key("properties") && !object.contains_key("additionalProperties") {
        let _ = object.insert("additionalProperties".into(), Value::Bool(false));
    }
}
