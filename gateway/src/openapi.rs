//! The OpenAPI document of the API, derived from the code: each handler's
//! `#[utoipa::path]` (with the typed request and response bodies), plus
//! what the layers add to the operations they wrap, documented by the same
//! code that applies them (`routes::api`) or, for the layers every request
//! passes, by [`edge`] here. `ticketing openapi check` keeps
//! `docs/openapi.json` equal to it; `GET /api/openapi.json` serves it.

use std::sync::LazyLock;

use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::info::{InfoBuilder, LicenseBuilder};
use utoipa::openapi::path::{HttpMethod, Operation, ParameterBuilder, ParameterIn, Paths};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{ComponentsBuilder, Content, OpenApi, OpenApiBuilder, Ref, RefOr, Required};

use crate::error::ErrorBody;

/// The security scheme names the handlers' `security(...)` refer to.
pub(crate) const SESSION_COOKIE: &str = "session";
pub(crate) const BEARER: &str = "bearer";

const DESCRIPTION: &str = "\
The REST API of ticketing, an event-sourced ticket-resale backend. \
`docs/api-contract.md` is the contract this document describes: paths, \
bodies, status codes and the exact error messages.

Every error body is `{\"errors\":[{\"message\":\"...\",\"field\":\"...\"}]}` \
(`field` only for validation errors), one entry per failed rule.

A session is a JWT set by sign-up and sign-in in the `session` cookie; the \
same token is accepted as `Authorization: Bearer <jwt>`.

Commands answer with `X-Consistency-Token` (and a short-lived `consistency` \
cookie holding it); a GET sending the token back, in the header or the \
cookie, waits (bounded) until the read models show that write.

Every response carries `X-Request-Id`. Successful GETs under `/api/` carry \
a weak `ETag` and `Cache-Control`; `If-None-Match` naming the tag gets 304.

The ticket list, a ticket and the caller's orders may be served from \
memory: dropped as soon as the read models change, and never older than \
the consistency token a GET carries.";

/// The document as the code describes it.
pub fn openapi_document() -> OpenApi {
    let (_, mut document) = crate::routes::api(None).split_for_parts();
    edge(&mut document);
    document
}

/// [`openapi_document`] as the text committed in `docs/openapi.json`.
pub fn openapi_json() -> Result<String, serde_json::Error> {
    openapi_document()
        .to_pretty_json()
        .map(|text| format!("{text}\n"))
}

/// What `GET /api/openapi.json` serves: built once, on first use.
pub(crate) fn served() -> Result<&'static str, &'static serde_json::Error> {
    static TEXT: LazyLock<Result<String, serde_json::Error>> = LazyLock::new(openapi_json);
    TEXT.as_ref().map(String::as_str)
}

/// The document before any route is added: what the API is, its tags,
/// its security schemes and the error shape.
pub(crate) fn base() -> OpenApi {
    let tag = |name: &str, description: &str| {
        TagBuilder::new()
            .name(name)
            .description(Some(description))
            .build()
    };
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("ticketing")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .license(Some(
                    LicenseBuilder::new()
                        .name("Apache-2.0")
                        .identifier(Some("Apache-2.0"))
                        .build(),
                )),
        )
        .tags(Some([
            tag("users", "Sign-up, sign-in, sign-out and the current user."),
            tag("tickets", "Tickets for sale."),
            tag("orders", "Orders reserving a ticket until paid or expired."),
            tag("payments", "Paying for an order."),
            tag("operations", "Health, metrics and this document."),
        ]))
        .components(Some(
            ComponentsBuilder::new()
                .schema_from::<ErrorBody>()
                .security_scheme(
                    SESSION_COOKIE,
                    SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                        "session",
                        "The session JWT (HS256) that sign-up and sign-in set: \
                         HttpOnly, SameSite=Lax, path `/`.",
                    ))),
                )
                .security_scheme(
                    BEARER,
                    SecurityScheme::Http(
                        Http::builder()
                            .scheme(HttpAuthScheme::Bearer)
                            .bearer_format("JWT")
                            .description(Some(
                                "The session cookie's token as `Authorization: Bearer <jwt>`; \
                                 it wins over the cookie.",
                            ))
                            .build(),
                    ),
                )
                .build(),
        ))
        .build()
}

/// The error shape, as a response body.
fn error_content() -> Content {
    Content::new(Some(Ref::from_schema_name("ErrorBody")))
}

fn string_header(description: &str) -> Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(description))
        .build()
}

/// Adds `why` to the operation's `status` answer, creating it (with the
/// error shape as its body) when the handler's documentation has none.
fn error_answer(operation: &mut Operation, status: &str, why: &str) {
    match operation.responses.responses.get_mut(status) {
        Some(RefOr::T(response)) => {
            response.description.push_str("\n\n");
            response.description.push_str(why);
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            let response = ResponseBuilder::new()
                .description(why)
                .content("application/json", error_content())
                .build();
            let _ = operation
                .responses
                .responses
                .insert(status.to_owned(), RefOr::T(response));
        }
    }
}

/// `Retry-After` on an error answer.
fn retry_after(operation: &mut Operation, status: &str) {
    if let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status) {
        let header = HeaderBuilder::new()
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1)),
            ))
            .description(Some("Seconds to wait before retrying."))
            .build();
        let _ = response
            .headers
            .insert("Retry-After".to_owned(), RefOr::T(header));
    }
}

fn each_operation(paths: &mut Paths, mut visit: impl FnMut(&str, HttpMethod, &mut Operation)) {
    for (path, item) in &mut paths.paths {
        for (method, operation) in [
            (HttpMethod::Get, &mut item.get),
            (HttpMethod::Put, &mut item.put),
            (HttpMethod::Post, &mut item.post),
            (HttpMethod::Delete, &mut item.delete),
            (HttpMethod::Patch, &mut item.patch),
            (HttpMethod::Head, &mut item.head),
            (HttpMethod::Options, &mut item.options),
            (HttpMethod::Trace, &mut item.trace),
        ] {
            if let Some(operation) = operation {
                visit(path, method, operation);
            }
        }
    }
}

fn successes(operation: &mut Operation) -> impl Iterator<Item = &mut utoipa::openapi::Response> {
    operation
        .responses
        .responses
        .iter_mut()
        .filter(|(status, _)| status.starts_with('2'))
        .filter_map(|(_, response)| match response {
            RefOr::T(response) => Some(response),
            RefOr::Ref(_) => None,
        })
}

/// What the `idempotency::idempotent` layer adds to the operations it wraps.
pub(crate) fn idempotency_key(paths: &mut Paths) {
    each_operation(paths, |_, _, operation| {
        let parameter = ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Makes a retry safe: the first request with a key runs; a retry with the \
                 same key and the same body gets the first response back \
                 (`Idempotent-Replayed: true`) and runs nothing. Keys are per user and \
                 remembered for `IDEMPOTENCY_RETENTION_HOURS`.",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(255))
                    .pattern(Some("^[!-~]+$")),
            ))
            .build();
        operation
            .parameters
            .get_or_insert_with(Vec::new)
            .push(RefOr::T(parameter));
        for response in successes(operation) {
            let _ = response.headers.insert(
                "Idempotent-Replayed".to_owned(),
                RefOr::T(string_header(
                    "`true` when this is the stored response of an earlier request with the same key.",
                )),
            );
        }
        error_answer(
            operation,
            "400",
            "\"Idempotency-Key must be 1 to 255 visible ASCII characters\"; \
             \"Idempotency-Key was already used for a different request\"; \
             \"A request with this Idempotency-Key is still in progress; retry later\".",
        );
    });
}

/// What the `shedding::shed_writes` layer adds to the operations it wraps.
pub(crate) fn write_shedding(paths: &mut Paths) {
    each_operation(paths, |_, _, operation| {
        error_answer(
            operation,
            "503",
            "\"The service is catching up with recent changes; retry shortly\": new writes \
             are shed while the read side is more than `WRITE_SHED_BACKLOG` events behind.",
        );
    });
}

/// What the layers every request passes add (`routes::router`): the
/// request timeout, the body limit, conditional GETs and the consistency
/// cookie; and `Retry-After` on every 429 and 503 in the error shape.
fn edge(document: &mut OpenApi) {
    each_operation(&mut document.paths, |path, method, operation| {
        error_answer(
            operation,
            "408",
            "\"The request took too long\": not answered within `HTTP_REQUEST_TIMEOUT_MS`, \
             the body's upload included.",
        );
        if operation.request_body.is_some() {
            error_answer(
                operation,
                "413",
                "\"Request body is too large\": over `BODY_LIMIT_BYTES` (64 KiB by default).",
            );
        }
        if method == HttpMethod::Get && path.starts_with("/api/") {
            conditional(path, operation);
        }
        for response in successes(operation) {
            if response.headers.contains_key("X-Consistency-Token") {
                let _ = response.headers.insert(
                    "Set-Cookie".to_owned(),
                    RefOr::T(string_header(
                        "`consistency=<token>; Path=/api; Max-Age=60; HttpOnly; SameSite=Lax`: \
                         the token merged with the client's earlier marks, for clients that \
                         send no header.",
                    )),
                );
            }
        }
        for status in ["429", "503"] {
            let error_shaped = matches!(
                operation.responses.responses.get(status),
                Some(RefOr::T(response)) if response.content.get("application/json").is_some_and(
                    |content| matches!(content, RefOr::T(c) if c.schema == Some(RefOr::Ref(Ref::from_schema_name("ErrorBody"))))
                )
            );
            if error_shaped {
                retry_after(operation, status);
            }
        }
    });
}

/// `conditional::conditional_get`: an `ETag` and `Cache-Control` on every
/// 200, and 304 for an `If-None-Match` naming the tag.
fn conditional(path: &str, operation: &mut Operation) {
    let private = crate::conditional::is_private(path);
    let if_none_match = ParameterBuilder::new()
        .name("If-None-Match")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "An `ETag` of an earlier answer (or `*`): if the answer is unchanged, 304 without a body.",
        ))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build();
    operation
        .parameters
        .get_or_insert_with(Vec::new)
        .push(RefOr::T(if_none_match));
    let etag = || {
        string_header(
            "A weak tag of the body (`W/\"...\"`): it changes exactly when the answer does.",
        )
    };
    let cache_control = HeaderBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([if private {
                    "private, no-cache"
                } else {
                    "public, no-cache"
                }])),
        ))
        .description(Some(if private {
            "Only the user's own browser may keep it, revalidating on every use."
        } else {
            "Any cache may keep it, revalidating on every use."
        }))
        .build();
    if let Some(RefOr::T(ok)) = operation.responses.responses.get_mut("200") {
        let _ = ok.headers.insert("ETag".to_owned(), RefOr::T(etag()));
        let _ = ok
            .headers
            .insert("Cache-Control".to_owned(), RefOr::T(cache_control.clone()));
        if private {
            let _ = ok.headers.insert(
                "Vary".to_owned(),
                RefOr::T(string_header("Includes `cookie, authorization`.")),
            );
        }
    }
    let not_modified = ResponseBuilder::new()
        .description("Not modified: `If-None-Match` names the current tag; no body.")
        .header("ETag", etag())
        .header("Cache-Control", cache_control)
        .build();
    let _ = operation
        .responses
        .responses
        .insert("304".to_owned(), RefOr::T(not_modified));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operations(document: &mut OpenApi) -> Vec<(String, String)> {
        let mut found = Vec::new();
        each_operation(&mut document.paths, |path, method, _| {
            let method = serde_json::to_value(method).unwrap_or_default();
            let method = method.as_str().unwrap_or_default().to_uppercase();
            found.push((method, path.to_owned()));
        });
        found
    }

    /// `routes::api` registers each route with its documentation, so this
    /// list is also the router's: a route added there must appear here.
    #[test]
    fn every_route_is_in_the_document() {
        let mut expected: Vec<(String, String)> = [
            ("POST", "/api/users/signup"),
            ("POST", "/api/users/signin"),
            ("POST", "/api/users/signout"),
            ("GET", "/api/users/currentuser"),
            ("GET", "/api/tickets"),
            ("POST", "/api/tickets"),
            ("GET", "/api/tickets/{id}"),
            ("PUT", "/api/tickets/{id}"),
            ("GET", "/api/orders"),
            ("POST", "/api/orders"),
            ("POST", "/api/payments"),
            ("GET", "/api/orders/{id}"),
            ("DELETE", "/api/orders/{id}"),
            ("GET", "/api/tickets/{id}/history"),
            ("GET", "/api/orders/{id}/history"),
            ("GET", "/api/openapi.json"),
            ("GET", "/healthz"),
            ("GET", "/readyz"),
            ("GET", "/metrics"),
        ]
        .map(|(method, path)| (method.to_owned(), path.to_owned()))
        .to_vec();
        let mut documented = operations(&mut openapi_document());
        expected.sort();
        documented.sort();
        assert_eq!(documented, expected);
    }

    /// Links and clients name operations by id, so each must be unique.
    #[test]
    fn operation_ids_are_unique() {
        let mut document = openapi_document();
        let mut ids = Vec::new();
        each_operation(&mut document.paths, |path, _, operation| {
            ids.push(
                operation
                    .operation_id
                    .clone()
                    .unwrap_or_else(|| path.to_owned()),
            );
        });
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count, "{ids:?}");
    }

    #[test]
    fn signed_in_operations_name_both_session_schemes() {
        let document = openapi_document();
        let post = |path: &str| {
            document
                .paths
                .paths
                .get(path)
                .and_then(|item| item.post.clone())
        };
        let security = post("/api/tickets")
            .and_then(|operation| operation.security)
            .map(|requirements| serde_json::to_value(requirements).ok());
        assert_eq!(
            security,
            Some(Some(
                serde_json::json!([{ "session": [] }, { "bearer": [] }])
            ))
        );
        let schemes = document.components.as_ref().map(|components| {
            components
                .security_schemes
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        });
        assert_eq!(
            schemes,
            Some(vec![BEARER.to_owned(), SESSION_COOKIE.to_owned()])
        );
    }

    #[test]
    fn the_layers_are_documented_on_the_operations_they_wrap() {
        let document = serde_json::to_value(openapi_document()).unwrap_or_default();
        let operation = |path: &str, method: &str| document["paths"][path][method].clone();
        let parameters = |path: &str, method: &str| -> Vec<String> {
            operation(path, method)["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect()
        };
        // Idempotency on the creating POSTs only.
        for path in ["/api/tickets", "/api/orders", "/api/payments"] {
            assert!(
                parameters(path, "post").contains(&"Idempotency-Key".to_owned()),
                "{path}"
            );
        }
        assert!(!parameters("/api/tickets/{id}", "put").contains(&"Idempotency-Key".to_owned()));
        // Shedding: new writes get its 503; paying does not.
        let shed = "The service is catching up";
        let answers_503 = |path: &str, method: &str| {
            operation(path, method)["responses"]["503"]["description"]
                .as_str()
                .is_some_and(|d| d.contains(shed))
        };
        assert!(answers_503("/api/tickets", "post"));
        assert!(answers_503("/api/tickets/{id}", "put"));
        assert!(!answers_503("/api/payments", "post"));
        // Conditional GETs: 304 and If-None-Match on GETs under /api/ only.
        let list = operation("/api/tickets", "get");
        assert!(list["responses"]["304"].is_object());
        assert!(list["responses"]["200"]["headers"]["ETag"].is_object());
        assert!(parameters("/api/tickets", "get").contains(&"If-None-Match".to_owned()));
        assert!(operation("/healthz", "get")["responses"]["304"].is_null());
        // The body limit where there is a body; the timeout everywhere.
        assert!(operation("/api/orders", "post")["responses"]["413"].is_object());
        assert!(operation("/api/orders/{id}", "delete")["responses"]["413"].is_null());
        assert!(operation("/api/orders/{id}", "delete")["responses"]["408"].is_object());
        // A history is its reader's own, even a ticket's (public itself).
        let cache_control = |path: &str| {
            operation(path, "get")["responses"]["200"]["headers"]["Cache-Control"]["schema"]["enum"]
                [0]
            .clone()
        };
        assert_eq!(cache_control("/api/tickets/{id}"), "public, no-cache");
        for path in ["/api/tickets/{id}/history", "/api/orders/{id}/history"] {
            assert_eq!(cache_control(path), "private, no-cache", "{path}");
            assert!(parameters(path, "get").contains(&"after".to_owned()));
        }
        assert!(parameters("/api/tickets/{id}", "get").contains(&"asOf".to_owned()));
        assert!(parameters("/api/orders/{id}", "get").contains(&"asOf".to_owned()));
    }
}
