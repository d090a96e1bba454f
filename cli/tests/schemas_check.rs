#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! `ticketing schemas check` as CI runs it, on an edited copy of the
//! committed schema folder: the process fails with a message that names the
//! field, the broken rule and the way out.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn committed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

/// A fresh copy of every committed `*.json` under a unique temporary folder.
fn copy_of_committed() -> PathBuf {
    let target = std::env::temp_dir().join(format!("schemas-{}", uuid::Uuid::new_v4()));
    copy_json(&committed_dir(), &target);
    let _ = std::fs::copy(
        committed_dir().join("asyncapi.json"),
        target.join("asyncapi.json"),
    )
    .unwrap();
    target
}

fn copy_json(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        // Topic folders (`*.v<n>`) and everything below them; not `src/`.
        let in_topic = from.to_string_lossy().contains(".v");
        if path.is_dir() && (in_topic || name.to_string_lossy().contains(".v")) {
            copy_json(&path, &to.join(name));
        } else if in_topic && path.extension().is_some_and(|e| e == "json") {
            std::fs::create_dir_all(to).unwrap();
            let _ = std::fs::copy(&path, to.join(name)).unwrap();
        }
    }
}

fn check(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ticketing"))
        .args(["schemas", "check", "--dir"])
        .arg(dir)
        .output()
        .unwrap()
}

fn edit(path: &Path, change: impl FnOnce(&mut Value)) {
    let mut schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    change(&mut schema);
    std::fs::write(path, serde_json::to_string_pretty(&schema).unwrap()).unwrap();
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_committed_schemas_pass() {
    let output = check(&committed_dir());
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn an_unmodified_copy_passes() {
    let dir = copy_of_committed();
    let output = check(&dir);
    assert!(output.status.success(), "{}", stderr(&output));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_committed_schema_edited_by_hand_fails_as_drift() {
    let dir = copy_of_committed();
    let file = dir.join("ticketing.orders.v1/OrderPlaced/1.0.0.json");
    edit(&file, |schema| {
        schema["properties"]["data"]["properties"]["userId"]["type"] = "integer".into();
    });

    let output = check(&dir);

    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("ticketing.orders.v1/OrderPlaced/1.0.0.json"),
        "{message}"
    );
    assert!(message.contains("ticketing schemas generate"), "{message}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// History says TicketCreated 1.0.0 carried `listingCode`; the current
/// version no longer has it, so old messages would be rejected.
#[test]
fn a_field_the_current_version_dropped_fails_as_incompatible() {
    let dir = copy_of_committed();
    let old = dir.join("ticketing.tickets.v1/TicketCreated/1.0.0.json");
    edit(&old, |schema| {
        schema["properties"]["data"]["properties"]["listingCode"] =
            serde_json::json!({ "type": "string" });
    });

    let output = check(&dir);

    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    for expected in [
        "data.listingCode",
        "field removed or renamed",
        "BACKWARD_TRANSITIVE",
        "new topic major version, e.g. ticketing.tickets.v2",
    ] {
        assert!(
            message.contains(expected),
            "{expected} missing from: {message}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_deleted_schema_file_fails_as_missing() {
    let dir = copy_of_committed();
    std::fs::remove_file(dir.join("ticketing.payments.v1/PaymentFailed/1.0.0.json")).unwrap();

    let output = check(&dir);

    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("PaymentFailed/1.0.0.json: not committed"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn generate_into_an_empty_folder_writes_what_check_accepts() {
    let dir = std::env::temp_dir().join(format!("schemas-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let generate = Command::new(env!("CARGO_BIN_EXE_ticketing"))
        .args(["schemas", "generate", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(generate.status.success(), "{}", stderr(&generate));

    let output = check(&dir);

    assert!(output.status.success(), "{}", stderr(&output));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_asyncapi_document_out_of_step_with_the_schemas_fails() {
    let dir = copy_of_committed();
    edit(&dir.join("asyncapi.json"), |document| {
        document["channels"]["orders"]["address"] = "ticketing.orders.v2".into();
    });

    let output = check(&dir);

    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("asyncapi.json is missing or out of date"),
        "{}",
        stderr(&output)
    );
    std::fs::remove_dir_all(dir).unwrap();
}
