//! Conditional GETs. Every successful `GET /api/...` carries an `ETag` (a
//! digest of the body it sends, so it changes exactly when the answer
//! does, whatever the projections applied), and a request whose
//! `If-None-Match` names it gets 304 without the body. The tag is weak
//! (`W/`): the same representation is sent compressed or not. A consistency
//! wait happens before the body is built, so a tag never stands for a page
//! older than the request's token. A page served from memory (see
//! `page_cache`) comes with its tag, computed once when it was built.
//!
//! `Cache-Control` says who may keep an answer: public lists and tickets
//! may be stored anywhere but revalidated on every use; what belongs to
//! one user (orders, the current user) only by that user's browser.

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH, VARY};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Bodies are built in memory already (JSON); this only bounds the copy.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Whether the answer to a GET of `path` is one user's (`private`); the
/// OpenAPI document states the same `Cache-Control` from it.
pub(crate) fn is_private(path: &str) -> bool {
    // A ticket's history is its owner's alone.
    path.starts_with("/api/orders") || path.starts_with("/api/users/") || path.ends_with("/history")
}

pub(crate) async fn conditional_get(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if request.method() != Method::GET || !path.starts_with("/api/") {
        return next.run(request).await;
    }
    let private = is_private(path);
    let wanted = request.headers().get(IF_NONE_MATCH).cloned();
    let response = next.run(request).await;
    if response.status() != StatusCode::OK {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // A page from memory carries its tag: its body need not be read.
    let known = parts
        .headers
        .get(ETAG)
        .and_then(|tag| tag.to_str().ok())
        .map(str::to_owned);
    let (tag, body) = match known {
        Some(tag) => (tag, body),
        None => {
            let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
                return ApiError::Unexpected(anyhow::anyhow!("a response body could not be read"))
                    .into_response();
            };
            (etag_of(&bytes), Body::from(bytes))
        }
    };
    let cache = if private {
        "private, no-cache"
    } else {
        "public, no-cache"
    };
    let headers = &mut parts.headers;
    if let Ok(value) = HeaderValue::from_str(&tag) {
        let _ = headers.insert(ETAG, value);
    }
    let _ = headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    if private {
        let _ = headers.append(VARY, HeaderValue::from_static("cookie, authorization"));
    }
    if wanted.as_ref().is_some_and(|wanted| matches(wanted, &tag)) {
        parts.status = StatusCode::NOT_MODIFIED;
        let _ = parts.headers.remove(axum::http::header::CONTENT_TYPE);
        let _ = parts.headers.remove(axum::http::header::CONTENT_LENGTH);
        // A page from memory may come compressed; the 304 has no body.
        let _ = parts.headers.remove(axum::http::header::CONTENT_ENCODING);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, body)
}

/// The weak tag of a body: a digest, so it changes exactly when the body
/// does.
pub(crate) fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("W/\"{}\"", hex(&digest[..16]))
}

/// `If-None-Match` names `tag`, by the weak comparison (RFC 9110 13.1.2).
fn matches(wanted: &HeaderValue, tag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    wanted.to_str().is_ok_and(|wanted| {
        wanted.trim() == "*"
            || wanted
                .split(',')
                .any(|candidate| opaque(candidate) == opaque(tag))
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_comparison_ignores_the_weakness_and_finds_the_tag_in_a_list() {
        let tag = "W/\"abc\"";
        for wanted in ["W/\"abc\"", "\"abc\"", "\"x\", W/\"abc\"", "*"] {
            assert!(matches(&HeaderValue::from_static(wanted), tag), "{wanted}");
        }
        for wanted in ["W/\"abd\"", "\"abcd\"", ""] {
            assert!(!matches(&HeaderValue::from_static(wanted), tag), "{wanted}");
        }
    }
}
