#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! `ticketing openapi check` as `make test` runs it: it passes on the
//! committed document, and fails, naming the way out, on a stale copy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn committed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

fn openapi(command: &str, file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ticketing"))
        .args(["openapi", command, "--file"])
        .arg(file)
        .output()
        .unwrap()
}

fn scratch_file() -> PathBuf {
    std::env::temp_dir().join(format!("openapi-{}.json", uuid::Uuid::new_v4()))
}

#[test]
fn the_committed_document_is_what_the_code_describes() {
    let output = openapi("check", &committed());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_stale_document_fails_the_check_and_generate_brings_it_up_to_date() {
    let file = scratch_file();
    let current = std::fs::read_to_string(committed()).unwrap();
    let stale = current.replace("Not authorized", "Forbidden");
    assert_ne!(stale, current);
    std::fs::write(&file, stale).unwrap();

    let output = openapi("check", &file);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is out of date") && stderr.contains("ticketing openapi generate"),
        "{stderr}"
    );

    assert!(openapi("generate", &file).status.success());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        std::fs::read_to_string(committed()).unwrap()
    );
    assert!(openapi("check", &file).status.success());
    std::fs::remove_file(&file).unwrap();
}
