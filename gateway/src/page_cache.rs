//! Pages served from memory (issue 17). The hot GETs (the ticket list, a
//! ticket, a user's orders) keep their serialized body and its `ETag`, so
//! that a request for an unchanged page costs a lookup and a write instead
//! of a query and a serialization.
//!
//! # When an entry may be served
//!
//! An entry is keyed by the page (its normalized `limit` and `after`, the
//! ticket's id, and for orders the user: a user's orders are never shared
//! with another user) and by the read side's *generation*: a counter that
//! moves after every commit that changed a view, whichever projection
//! worker made it (`ticketing_projections::changes`: a worker in this
//! process moves it at once, the others through a notification sent after
//! their commit). A request reads the generation before its database
//! query, so a commit that moved the counter before it is in its page; a
//! later commit moves the counter and the next request misses. An entry
//! therefore serves what a query would have read, never older than the
//! read models were when the request read the generation, give or take
//! the notification's delivery (a millisecond) for another process's
//! commits.
//!
//! Writes nobody announces (rows changed by hand) are bounded by the
//! entries' time to live, `PAGE_CACHE_MAX_AGE_MS`.
//!
//! A gateway given no generation caches nothing: a time bound alone would
//! add staleness on every write, which the read side's lag does not
//! include today.
//!
//! Each entry also keeps its body compressed, once per encoding asked for
//! (`precompressed`).
//!
//! With a read replica (`READ_DATABASE_URL`) misses are computed there,
//! while the generation counts the primary's commits: a page computed
//! before the replica applied a counted commit keeps the new generation
//! until the next one, bounded by the time to live. Without a token, reads
//! from a replica are already as old as its lag; with one, the rule below
//! still holds, since the wait watched the replica.
//!
//! # Consistency tokens
//!
//! A request carrying a token (header, or cookie marks for the views read)
//! first waits for the token as before; then only an entry whose query
//! started after that wait ended may serve it, since only such a query is
//! known to see the token's writes. Otherwise the page is recomputed and
//! replaces the entry (so later requests get the fresher page).
//!
//! A burst of misses for one key computes the page once; the others wait
//! for it (and count as hits: they cost the database nothing).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE, ETAG, LINK, VARY};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use moka::future::Cache;
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::conditional::etag_of;
use crate::error::ApiError;
use crate::precompressed::{AcceptEncoding, Encoding, MIN_BYTES};

/// The read side's generation: moves whenever the read models changed
/// (see the module documentation); the serve command reads it from the
/// projection worker of its process.
pub type ReadGeneration = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Which page: everything its body depends on besides the read models.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum PageKey {
    Tickets {
        limit: i64,
        after: Option<String>,
    },
    Ticket {
        id: String,
    },
    /// One user's: the user is part of the key.
    Orders {
        user_id: String,
        limit: i64,
        after: Option<String>,
    },
}

impl PageKey {
    fn weight(&self) -> usize {
        match self {
            PageKey::Tickets { after, .. } => after.as_ref().map_or(0, String::len),
            PageKey::Ticket { id } => id.len(),
            PageKey::Orders { user_id, after, .. } => {
                user_id.len() + after.as_ref().map_or(0, String::len)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    generation: u64,
    page: PageKey,
}

/// A page as computed: the JSON body and its `Link` header, if any.
pub(crate) struct Rendered {
    pub(crate) body: Bytes,
    pub(crate) link: Option<HeaderValue>,
}

impl Rendered {
    pub(crate) fn json<T: Serialize>(value: &T) -> Result<Self, ApiError> {
        let body = serde_json::to_vec(value)
            .map_err(|error| ApiError::Unexpected(anyhow::Error::new(error)))?;
        Ok(Self {
            body: Bytes::from(body),
            link: None,
        })
    }
}

/// A page kept in memory.
struct Entry {
    body: Bytes,
    etag: HeaderValue,
    link: Option<HeaderValue>,
    /// When the query that built it started.
    started: Instant,
    /// The body compressed, per encoding, made when first asked for; None
    /// if compressing failed (the response layer then compresses).
    compressed: [OnceCell<Option<Bytes>>; Encoding::COUNT],
}

impl Entry {
    fn new(rendered: Rendered, started: Instant) -> Self {
        let etag = HeaderValue::from_str(&etag_of(&rendered.body))
            .unwrap_or_else(|_| HeaderValue::from_static("W/\"\""));
        Self {
            body: rendered.body,
            etag,
            link: rendered.link,
            started,
            compressed: Default::default(),
        }
    }

    /// What the cache counts an entry as: its body, and as much again at
    /// most for its compressed copies (JSON compresses to well under a
    /// third with each codec), so the bound holds whichever are made.
    fn weight(&self) -> usize {
        self.body.len().saturating_mul(2)
    }

    /// The 200 answer, compressed if the client accepts an encoding kept
    /// here; its `ETag` is set here, so the conditional layer does not
    /// digest the body again.
    async fn response(&self, accept: AcceptEncoding) -> Response {
        let compressed = match accept.0 {
            // As the response layer: small bodies go as they are.
            Some(encoding) if self.body.len() >= usize::from(MIN_BYTES) => self.compressed
                [encoding.index()]
            .get_or_init(|| async {
                // Inline, as the response layer compresses: about a
                // millisecond for a full page, once per entry.
                encoding
                    .compress(&self.body)
                    .inspect_err(|error| tracing::warn!(%error, "a page could not be compressed"))
                    .ok()
            })
            .await
            .clone()
            .map(|bytes| (encoding, bytes)),
            _ => None,
        };
        let mut response = match &compressed {
            Some((_, bytes)) => page_response(bytes.clone(), self.link.as_ref(), Some(&self.etag)),
            None => page_response(self.body.clone(), self.link.as_ref(), Some(&self.etag)),
        };
        if let Some((encoding, _)) = compressed {
            let headers = response.headers_mut();
            let _ = headers.insert(CONTENT_ENCODING, encoding.header_value());
            let _ = headers.append(VARY, HeaderValue::from_static("accept-encoding"));
        }
        response
    }
}

/// A page's 200 answer: the JSON body, its `Link` and, if known, `ETag`.
fn page_response(body: Bytes, link: Option<&HeaderValue>, etag: Option<&HeaderValue>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    let _ = headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(etag) = etag {
        let _ = headers.insert(ETAG, etag.clone());
    }
    if let Some(link) = link {
        let _ = headers.insert(LINK, link.clone());
    }
    response
}

struct Enabled {
    entries: Cache<Key, Arc<Entry>>,
    generation: ReadGeneration,
}

/// The page cache, or none (disabled, or no generation to key it by).
pub(crate) struct PageCache(Option<Enabled>);

impl PageCache {
    /// At most `bytes` of pages (bodies and keys), each kept at most
    /// `max_age`; `bytes` or `max_age` 0, or no `generation`, disables it.
    pub(crate) fn new(bytes: u64, max_age: Duration, generation: Option<ReadGeneration>) -> Self {
        for result in ["hit", "miss"] {
            metrics::counter!("page_cache_requests_total", "result" => result).increment(0);
        }
        let enabled = generation
            .filter(|_| bytes > 0 && !max_age.is_zero())
            .map(|generation| Enabled {
                entries: Cache::builder()
                    .max_capacity(bytes)
                    .weigher(|key: &Key, entry: &Arc<Entry>| {
                        // The page, the key and the entry's fixed part.
                        let weight = entry.weight() + key.page.weight() + 256;
                        u32::try_from(weight).unwrap_or(u32::MAX)
                    })
                    .time_to_live(max_age)
                    .build(),
                generation,
            });
        Self(enabled)
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// The page `page`, from memory if an entry may serve it, else from
    /// `compute` (kept for later requests). `fresh_after`: the request
    /// carried a token, waited on until then; only a page whose query
    /// started later may answer it. `accept`: the encoding to answer in.
    pub(crate) async fn serve<F, Fut>(
        &self,
        page: PageKey,
        fresh_after: Option<Instant>,
        accept: AcceptEncoding,
        compute: F,
    ) -> Result<Response, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Rendered, ApiError>>,
    {
        let Some(enabled) = &self.0 else {
            // No tag here: the conditional layer digests the body.
            let rendered = compute().await?;
            return Ok(page_response(rendered.body, rendered.link.as_ref(), None));
        };
        // Read before the query starts (see the module documentation).
        let key = Key {
            generation: (enabled.generation)(),
            page,
        };
        let computed = |started: Instant| async move {
            compute()
                .await
                .map(|rendered| Arc::new(Entry::new(rendered, started)))
        };
        let (entry, hit) = match fresh_after {
            None => {
                let found = enabled
                    .entries
                    .entry_by_ref(&key)
                    .or_try_insert_with(computed(Instant::now()))
                    .await
                    .map_err(unshare)?;
                let hit = !found.is_fresh();
                (found.into_value(), hit)
            }
            Some(after) => match enabled.entries.get(&key).await {
                Some(entry) if entry.started >= after => (entry, true),
                _ => {
                    let entry = computed(Instant::now()).await?;
                    enabled.entries.insert(key, Arc::clone(&entry)).await;
                    (entry, false)
                }
            },
        };
        let result = if hit { "hit" } else { "miss" };
        metrics::counter!("page_cache_requests_total", "result" => result).increment(1);
        Ok(entry.response(accept).await)
    }
}

/// The error of a computation other requests waited on, for each of them.
fn unshare(error: Arc<ApiError>) -> ApiError {
    Arc::try_unwrap(error).unwrap_or_else(|shared| match &*shared {
        ApiError::NotFound => ApiError::NotFound,
        ApiError::NotAuthorized => ApiError::NotAuthorized,
        ApiError::BadRequest(message) => ApiError::BadRequest(message.clone()),
        ApiError::Unavailable(message) => ApiError::Unavailable(message.clone()),
        other => ApiError::Unexpected(anyhow::anyhow!("{other:#}")),
    })
}
