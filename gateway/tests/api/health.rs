use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{body, spawn_app};

#[tokio::test]
async fn liveness_and_readiness_answer() {
    let app = spawn_app().await;
    let live = app.get(&app.client, "/healthz").await;
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(body(live).await, json!({ "status": "ok" }));
    let ready = app.get(&app.client, "/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(body(ready).await, json!({ "status": "ready" }));
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let response = app.get(&app.client, "/healthz").await;
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}
