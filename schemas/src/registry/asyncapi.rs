//! The AsyncAPI 3 document of the topics: each topic and its dead-letter
//! topic, the message key and headers, and each event's message by `$ref`
//! to its committed JSON Schema (which describes the whole message: the
//! envelope with that event's `eventType` and `data`). Generated from the
//! same catalog as the schemas, committed beside them as [`FILE`], and
//! checked by `ticketing schemas check` like them.

use serde_json::{json, Map, Value};

use super::catalog::EventSchema;
use super::layout::relative_path;
use crate::headers;
use crate::topics::dead_letter_topic;

/// The document's file name in the schema folder (its `$ref`s are relative
/// to that folder).
pub const FILE: &str = "asyncapi.json";

const KAFKA_BINDING: &str = "0.5.0";

/// The AsyncAPI document describing `schemas` (the current version of each
/// event type of each topic, as [`generate`](super::generate) returns them).
#[must_use]
pub fn document(schemas: &[EventSchema]) -> Value {
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    let mut topics: Vec<&str> = schemas.iter().map(|s| s.topic.as_str()).collect();
    topics.dedup();
    for topic in topics {
        let name = channel_name(topic);
        let mut channel_messages = Map::new();
        for schema in schemas.iter().filter(|s| s.topic == topic) {
            let id = format!("{}.{}", name, schema.event_type);
            let _ = messages.insert(
                id.clone(),
                json!({
                    "name": schema.event_type,
                    "title": format!("{} {}", schema.event_type, schema.version),
                    "contentType": "application/json",
                    "headers": { "$ref": "#/components/schemas/EventHeaders" },
                    "payload": { "$ref": format!("./{}", relative_path(schema)) },
                    "bindings": { "kafka": key_binding() },
                }),
            );
            let _ = channel_messages.insert(
                schema.event_type.clone(),
                json!({ "$ref": format!("#/components/messages/{id}") }),
            );
        }
        let dlq = format!("{name}DeadLetters");
        let _ = channels.insert(
            name.clone(),
            json!({
                "address": topic,
                "title": topic,
                "description": format!("Every event of the {name} aggregates, keyed by aggregate id: one aggregate's events share a partition, in order. Published by the outbox relay, at least once (consumers deduplicate by aggregateId and sequence)."),
                "messages": channel_messages,
                "bindings": { "kafka": { "topic": topic, "bindingVersion": KAFKA_BINDING } },
            }),
        );
        let _ = channels.insert(
            dlq.clone(),
            json!({
                "address": dead_letter_topic(topic),
                "title": dead_letter_topic(topic),
                "description": format!("Messages of {topic} the projections could not apply, copied unchanged (bytes, key and headers) with why and where they came from."),
                "messages": { "DeadLetter": { "$ref": "#/components/messages/DeadLetter" } },
                "bindings": { "kafka": { "topic": dead_letter_topic(topic), "bindingVersion": KAFKA_BINDING } },
            }),
        );
        let _ = operations.insert(
            format!("publish{}", capitalized(&name)),
            json!({ "action": "send", "channel": { "$ref": format!("#/channels/{name}") }, "summary": "The outbox relay publishes each committed event." }),
        );
        let _ = operations.insert(
            format!("project{}", capitalized(&name)),
            json!({ "action": "receive", "channel": { "$ref": format!("#/channels/{name}") }, "summary": "The projection workers (one consumer group) build the read models." }),
        );
        let _ = operations.insert(
            format!("deadLetter{}", capitalized(&name)),
            json!({ "action": "send", "channel": { "$ref": format!("#/channels/{dlq}") }, "summary": "The projection workers park what they cannot apply." }),
        );
    }
    let _ = messages.insert(
        "DeadLetter".to_owned(),
        json!({
            "name": "DeadLetter",
            "title": "A message that could not be projected",
            "headers": { "$ref": "#/components/schemas/DeadLetterHeaders" },
            "payload": { "description": "The original message's bytes, unchanged; possibly not JSON at all." },
            "bindings": { "kafka": key_binding() },
        }),
    );
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "ticketing events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The Kafka topics of ticketing: every event of the Ticket, Order and Payment aggregates, as the outbox relay publishes them. Topic names carry the schema's major version; within it, every schema version is backward compatible (BACKWARD_TRANSITIVE) with the earlier ones.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": {
                "EventHeaders": event_headers(),
                "DeadLetterHeaders": dead_letter_headers(),
            },
        },
    })
}

fn key_binding() -> Value {
    json!({
        "key": { "type": "string", "description": "The aggregate id (the envelope's aggregateId)." },
        "bindingVersion": KAFKA_BINDING,
    })
}

fn event_headers() -> Value {
    let string = |description: &str| json!({ "type": "string", "description": description });
    json!({
        "type": "object",
        "properties": {
            (headers::EVENT_TYPE): string("The envelope's eventType."),
            (headers::SCHEMA_VERSION): string("The envelope's schemaVersion (semver of the payload schema)."),
            (headers::EVENT_ID): string("The envelope's eventId: the same on every re-publication."),
            (headers::CORRELATION_ID): string("Shared by every event one request caused."),
            (headers::TRACEPARENT): string("W3C trace context of the command, when it had one."),
        },
        "required": [headers::EVENT_TYPE, headers::SCHEMA_VERSION, headers::EVENT_ID],
    })
}

fn dead_letter_headers() -> Value {
    let string = |description: &str| json!({ "type": "string", "description": description });
    json!({
        "type": "object",
        "description": "The original message's headers, plus these.",
        "properties": {
            (headers::dlq::ERROR): string("Why the message could not be applied, with its causes."),
            (headers::dlq::ORIGIN_TOPIC): string("The topic it was read from."),
            (headers::dlq::ORIGIN_PARTITION): string("Its partition there."),
            (headers::dlq::ORIGIN_OFFSET): string("Its offset there."),
        },
        "required": [headers::dlq::ERROR, headers::dlq::ORIGIN_TOPIC, headers::dlq::ORIGIN_PARTITION, headers::dlq::ORIGIN_OFFSET],
    })
}

/// `ticketing.orders.v1` → `orders`.
fn channel_name(topic: &str) -> String {
    topic.split('.').nth(1).unwrap_or(topic).to_owned()
}

fn capitalized(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::registry::generate;

    #[test]
    fn every_event_type_of_every_topic_has_a_message_and_its_schema() {
        let schemas = generate().unwrap();
        let document = document(&schemas);
        for schema in &schemas {
            let channel = &document["channels"][channel_name(&schema.topic)];
            assert_eq!(channel["address"], schema.topic.as_str());
            let id = format!("{}.{}", channel_name(&schema.topic), schema.event_type);
            let message = &document["components"]["messages"][id.as_str()];
            assert_eq!(
                message["payload"]["$ref"],
                format!("./{}", relative_path(schema)),
            );
            assert!(channel["messages"][schema.event_type.as_str()].is_object());
        }
        assert_eq!(
            document["channels"]["ordersDeadLetters"]["address"],
            "ticketing.orders.v1.dlq"
        );
        assert_eq!(document["asyncapi"], "3.0.0");
    }
}
