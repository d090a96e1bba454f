#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! Every compatibility rule with a failing and a passing fixture, then the
//! check as a whole (drift, versions, transitivity) and the committed folder.

use serde_json::{json, Value};

use super::*;

/// An event schema as the catalog writes it: closed objects, `data` inside.
fn event(data_properties: Value, data_required: &[&str]) -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "eventId": { "type": "string", "format": "uuid" },
            "eventType": { "type": "string", "const": "TicketCreated" },
            "data": {
                "type": "object",
                "additionalProperties": false,
                "properties": data_properties,
                "required": data_required,
            }
        },
        "required": ["eventId", "eventType", "data"]
    })
}

fn v1() -> Value {
    event(
        json!({
            "title": { "type": "string" },
            "priceCents": { "type": "integer", "format": "int64" },
            "note": { "type": ["string", "null"] },
            "status": { "type": "string", "enum": ["created", "cancelled", "complete"] }
        }),
        &["title", "priceCents", "status"],
    )
}

fn rules(old: &Value, new: &Value) -> Vec<(String, Rule)> {
    backward_incompatibilities(old, new)
        .unwrap()
        .into_iter()
        .map(|i| (i.field, i.rule))
        .collect()
}

fn with_data(schema: &Value, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut schema = schema.clone();
    edit(schema["properties"]["data"].as_object_mut().unwrap());
    schema
}

#[test]
fn an_identical_schema_is_compatible() {
    assert_eq!(rules(&v1(), &v1()), vec![]);
}

#[test]
fn removing_a_field_breaks() {
    let new = with_data(&v1(), |data| {
        data["properties"].as_object_mut().unwrap().remove("note");
    });
    assert_eq!(
        rules(&v1(), &new),
        vec![("data.note".into(), Rule::FieldRemoved)]
    );
}

#[test]
fn removing_a_field_breaks_even_where_the_old_schema_was_open() {
    let old = with_data(&v1(), |data| {
        data.remove("additionalProperties");
    });
    let new = with_data(&old, |data| {
        data["properties"].as_object_mut().unwrap().remove("note");
    });
    assert_eq!(
        rules(&old, &new),
        vec![("data.note".into(), Rule::FieldRemoved)]
    );
}

#[test]
fn renaming_a_field_breaks_as_a_removal() {
    let new = with_data(&v1(), |data| {
        let title = data["properties"]
            .as_object_mut()
            .unwrap()
            .remove("title")
            .unwrap();
        data["properties"]["name"] = title;
        data["required"] = json!(["name", "priceCents", "status"]);
    });
    let found = rules(&v1(), &new);
    assert!(
        found.contains(&("data.title".into(), Rule::FieldRemoved)),
        "{found:?}"
    );
}

#[test]
fn making_an_optional_field_required_breaks() {
    let new = with_data(&v1(), |data| {
        data["required"] = json!(["title", "priceCents", "status", "note"]);
    });
    assert_eq!(
        rules(&v1(), &new),
        vec![("data.note".into(), Rule::OptionalMadeRequired)]
    );
}

#[test]
fn making_a_required_field_optional_is_compatible() {
    let new = with_data(&v1(), |data| {
        data["required"] = json!(["priceCents", "status"]);
    });
    assert_eq!(rules(&v1(), &new), vec![]);
}

#[test]
fn a_new_required_field_without_a_default_breaks() {
    let new = with_data(&v1(), |data| {
        data["properties"]["currency"] = json!({ "type": "string" });
        data["required"] = json!(["title", "priceCents", "status", "currency"]);
    });
    assert_eq!(
        rules(&v1(), &new),
        vec![("data.currency".into(), Rule::RequiredFieldWithoutDefault)]
    );
}

#[test]
fn a_new_required_field_with_a_default_is_compatible() {
    let new = with_data(&v1(), |data| {
        data["properties"]["currency"] = json!({ "type": "string", "default": "usd" });
        data["required"] = json!(["title", "priceCents", "status", "currency"]);
    });
    assert_eq!(rules(&v1(), &new), vec![]);
}

#[test]
fn a_new_optional_field_is_compatible() {
    let new = with_data(&v1(), |data| {
        data["properties"]["currency"] = json!({ "type": "string", "default": "usd" });
    });
    assert_eq!(rules(&v1(), &new), vec![]);
}

#[test]
fn changing_a_type_breaks() {
    let new = with_data(&v1(), |data| {
        data["properties"]["priceCents"] = json!({ "type": "string" });
    });
    let found = rules(&v1(), &new);
    assert!(
        found.contains(&("data.priceCents".into(), Rule::TypeChanged)),
        "{found:?}"
    );
}

#[test]
fn making_a_nullable_field_non_null_breaks() {
    let new = with_data(&v1(), |data| {
        data["properties"]["note"] = json!({ "type": "string" });
    });
    let found = rules(&v1(), &new);
    assert!(
        found.iter().any(|(_, rule)| *rule == Rule::TypeChanged),
        "{found:?}"
    );
}

#[test]
fn widening_a_type_is_compatible() {
    let new = with_data(&v1(), |data| {
        data["properties"]["title"] = json!({ "type": ["string", "null"] });
    });
    assert_eq!(rules(&v1(), &new), vec![]);
}

#[test]
fn narrowing_an_enum_breaks() {
    let new = with_data(&v1(), |data| {
        data["properties"]["status"] = json!({ "type": "string", "enum": ["created", "complete"] });
    });
    assert_eq!(
        rules(&v1(), &new),
        vec![("data.status".into(), Rule::EnumNarrowed)]
    );
}

#[test]
fn widening_an_enum_is_compatible() {
    let new = with_data(&v1(), |data| {
        data["properties"]["status"] =
            json!({ "type": "string", "enum": ["created", "cancelled", "complete", "refunded"] });
    });
    assert_eq!(rules(&v1(), &new), vec![]);
}

/// schemars writes an enum whose variants have doc comments as a `oneOf`
/// of constants, which `json-schema-diff` alone does not compare.
#[test]
fn narrowing_an_enum_written_as_one_of_constants_breaks() {
    let one_of = |values: &[&str]| json!({ "oneOf": values.iter().map(|v| json!({ "type": "string", "const": v, "description": "doc" })).collect::<Vec<_>>() });
    let old = with_data(&v1(), |data| {
        data["properties"]["status"] = one_of(&["created", "cancelled", "complete"]);
    });
    let narrowed = with_data(&v1(), |data| {
        data["properties"]["status"] = one_of(&["created", "complete"]);
    });
    let widened = with_data(&v1(), |data| {
        data["properties"]["status"] = one_of(&["created", "cancelled", "complete", "refunded"]);
    });
    assert_eq!(
        rules(&old, &narrowed),
        vec![("data.status".into(), Rule::EnumNarrowed)]
    );
    assert_eq!(rules(&old, &widened), vec![]);
}

#[test]
fn a_nested_removal_names_the_full_path() {
    let old = with_data(&v1(), |data| {
        data["properties"]["ticket"] = json!({
            "type": "object",
            "properties": { "id": { "type": "string" }, "version": { "type": "integer" } },
            "required": ["id", "version"]
        });
    });
    let new = with_data(&v1(), |data| {
        data["properties"]["ticket"] = json!({
            "type": "object",
            "properties": { "id": { "type": "string" } },
            "required": ["id"]
        });
    });
    assert_eq!(
        rules(&old, &new),
        vec![("data.ticket.version".into(), Rule::FieldRemoved)]
    );
}

fn schema(event_type: &str, version: &str, schema: Value) -> EventSchema {
    EventSchema {
        topic: "ticketing.tickets.v1".into(),
        event_type: event_type.into(),
        version: version.into(),
        schema,
    }
}

#[test]
fn a_compatible_new_version_passes_the_check() {
    let new = with_data(&v1(), |data| {
        data["properties"]["currency"] = json!({ "type": "string", "default": "usd" });
    });
    let committed = [
        schema("E", "1.0.0", v1()),
        schema("E", "1.1.0", new.clone()),
    ];
    assert_eq!(check(&[schema("E", "1.1.0", new)], &committed), vec![]);
}

#[test]
fn an_incompatible_version_fails_naming_field_rule_and_the_next_topic() {
    let new = with_data(&v1(), |data| {
        data["properties"].as_object_mut().unwrap().remove("note");
    });
    let committed = [
        schema("E", "1.0.0", v1()),
        schema("E", "1.1.0", new.clone()),
    ];

    let problems = check(&[schema("E", "1.1.0", new)], &committed);

    assert_eq!(problems.len(), 1, "{problems:?}");
    let message = problems[0].to_string();
    for expected in [
        "data.note",
        "field removed or renamed",
        "1.0.0",
        "BACKWARD_TRANSITIVE",
        "ticketing.tickets.v2",
    ] {
        assert!(message.contains(expected), "{expected} missing: {message}");
    }
}

/// Transitive: 1.2.0 is compared with 1.0.0 too, not only with 1.1.0.
#[test]
fn a_version_compatible_with_its_predecessor_only_still_fails() {
    let v1_1 = with_data(&v1(), |data| {
        data["required"] = json!(["priceCents", "status"]);
    });
    let v1_2 = with_data(&v1_1, |data| {
        data["properties"].as_object_mut().unwrap().remove("title");
    });
    let committed = [
        schema("E", "1.0.0", v1()),
        schema("E", "1.1.0", v1_1.clone()),
        schema("E", "1.2.0", v1_2.clone()),
    ];
    assert_eq!(
        rules(&v1_1, &v1_2),
        vec![("data.title".into(), Rule::FieldRemoved)]
    );

    let problems = check(&[schema("E", "1.2.0", v1_2)], &committed);

    let against: Vec<&str> = problems
        .iter()
        .filter_map(|p| match p {
            Problem::Incompatible { against, .. } => Some(against.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(against, vec!["1.0.0", "1.1.0"]);
}

#[test]
fn a_schema_that_differs_from_the_committed_one_is_drift() {
    let changed = with_data(&v1(), |data| {
        data["properties"]["title"] = json!({ "type": "string", "maxLength": 80 });
    });
    let problems = check(
        &[schema("E", "1.0.0", changed)],
        &[schema("E", "1.0.0", v1())],
    );
    assert_eq!(
        problems,
        vec![Problem::Drift {
            path: "ticketing.tickets.v1/E/1.0.0.json".into()
        }]
    );
    assert!(problems[0]
        .to_string()
        .contains("ticketing schemas generate"));
}

#[test]
fn an_uncommitted_version_and_a_removed_event_type_fail() {
    let problems = check(
        &[schema("New", "1.0.0", v1())],
        &[schema("Old", "1.0.0", v1())],
    );
    assert_eq!(
        problems,
        vec![
            Problem::Missing {
                path: "ticketing.tickets.v1/New/1.0.0.json".into()
            },
            Problem::EventTypeRemoved {
                topic: "ticketing.tickets.v1".into(),
                event_type: "Old".into()
            }
        ]
    );
}

#[test]
fn a_version_whose_major_is_not_the_topics_fails() {
    let problems = check(&[schema("E", "2.0.0", v1())], &[schema("E", "2.0.0", v1())]);
    assert!(
        matches!(&problems[..], [Problem::BadVersion { reason, .. }] if reason.contains("major")),
        "{problems:?}"
    );
}

#[test]
fn a_version_older_than_a_committed_one_fails() {
    let committed = [schema("E", "1.0.0", v1()), schema("E", "1.1.0", v1())];
    let problems = check(&[schema("E", "1.0.0", v1())], &committed);
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::VersionBehind { committed, .. } if committed == "1.1.0")),
        "{problems:?}"
    );
}

#[test]
fn every_variant_of_every_topic_gets_a_schema() {
    let generated = generate().unwrap();
    let names: Vec<String> = generated.iter().map(relative_path).collect();
    for expected in [
        "ticketing.tickets.v1/TicketReserved/1.0.0.json",
        "ticketing.orders.v1/OrderPlaced/1.0.0.json",
        "ticketing.payments.v1/PaymentFailed/1.0.0.json",
    ] {
        assert!(
            names.contains(&expected.to_owned()),
            "{expected} not in {names:?}"
        );
    }
    let placed = generated
        .iter()
        .find(|s| s.event_type == "OrderPlaced")
        .unwrap();
    assert_eq!(
        placed.schema["properties"]["eventType"]["const"],
        "OrderPlaced"
    );
    assert_eq!(
        placed.schema["properties"]["data"]["additionalProperties"],
        false
    );
    assert_eq!(
        placed.schema["properties"]["data"]["properties"]["ticket"]["additionalProperties"],
        false
    );
}

/// The same check CI runs, on the folder committed next to this crate.
#[test]
fn the_committed_schemas_pass_the_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed = read_committed(root).unwrap();
    let problems = check(&generate().unwrap(), &committed);
    let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(messages.is_empty(), "{messages:#?}");
}
