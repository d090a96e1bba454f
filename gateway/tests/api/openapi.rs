//! The OpenAPI document as served, and the router walked through it: every
//! documented operation is routed, and answers a status it documents.

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{new_client, spawn_app, TestApp};

#[tokio::test]
async fn the_document_is_served_as_the_code_describes_it() {
    let app = spawn_app().await;
    let response = app.get(&app.client, "/api/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let served = response.text().await.unwrap();
    assert_eq!(served, ticketing_gateway::openapi_json().unwrap());
    let document: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
}

/// Every operation of the document, as (method, path, documented statuses).
fn operations(document: &Value) -> Vec<(Method, String, Vec<String>)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let statuses = operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            found.push((method, path.clone(), statuses));
        }
    }
    found
}

/// Sends each operation an empty JSON object (to a fresh id) and checks
/// the answer is one the document gives for it. A documented operation the
/// router did not serve would get the fallback's 404, which most of them
/// do not document.
async fn walk(app: &TestApp, client: &Client, skip: &[&str]) -> usize {
    let document = ticketing_gateway::openapi_json().unwrap();
    let document: Value = serde_json::from_str(&document).unwrap();
    let mut walked = 0;
    for (method, path, statuses) in operations(&document) {
        if skip.contains(&path.as_str()) {
            continue;
        }
        let url = app.url(&path.replace("{id}", &Uuid::now_v7().to_string()));
        let mut request = client.request(method.clone(), url);
        if method == Method::POST || method == Method::PUT {
            request = request.json(&json!({}));
        }
        let status = request.send().await.unwrap().status();
        assert!(
            statuses.contains(&status.as_u16().to_string()),
            "{method} {path} answered {status}, documented: {statuses:?}"
        );
        walked += 1;
    }
    walked
}

#[tokio::test]
async fn every_documented_operation_answers_a_documented_status() {
    let app = spawn_app().await;
    assert_eq!(walk(&app, &new_client(), &[]).await, 19);
    // Signed in (sign-out, which would end the session, was walked above).
    let (client, _) = app.signed_in_client().await;
    assert_eq!(walk(&app, &client, &["/api/users/signout"]).await, 18);
}
