//! Write shedding: once the read side is further behind the event store
//! than a bound, new writes are refused with 503 and `Retry-After` instead
//! of letting the lag, and every read-your-writes wait, grow without limit.
//!
//! Only writes that start something new are shed (creating a ticket or an
//! order, changing a ticket): paying for an order and cancelling one finish
//! what a buyer already started, are few, and free or settle tickets.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Events committed but not yet in the read models (outbox backlog plus
/// consumer lag), as last measured.
pub type BacklogGauge = Arc<dyn Fn() -> u64 + Send + Sync>;

/// When to shed: above `bound` events behind, as `backlog` reports.
pub(crate) struct WriteShedding {
    pub(crate) bound: u64,
    pub(crate) backlog: BacklogGauge,
}

/// Answers 503 (counted in `writes_shed_total`) while the read side is
/// further behind than the bound; otherwise passes the request on.
pub(crate) async fn shed_writes(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(shedding) = &state.shedding {
        let behind = (shedding.backlog)();
        if behind > shedding.bound {
            metrics::counter!("writes_shed_total").increment(1);
            tracing::debug!(behind, bound = shedding.bound, "write shed");
            return ApiError::Unavailable(
                "The service is catching up with recent changes; retry shortly".to_owned(),
            )
            .into_response();
        }
    }
    next.run(request).await
}
