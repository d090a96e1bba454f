//! Lifting ticket events stored at an older version to the current one, so
//! the aggregate (and every reader of the store) only knows the latest
//! shape. cqrs-es runs these on load, before deserializing.

use cqrs_es::persist::{EventUpcaster, SemanticVersionEventUpcaster};
use serde_json::Value;

/// Every price so far was in US dollars; 1.0 events did not say so.
pub const DEFAULT_CURRENCY: &str = "usd";

/// The current version of `TicketCreated` (1.1 added `currency`).
pub(super) const TICKET_CREATED_VERSION: &str = "1.1";

/// The upcasters of ticket events, oldest first.
#[must_use]
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    vec![Box::new(SemanticVersionEventUpcaster::new(
        "TicketCreated",
        TICKET_CREATED_VERSION,
        Box::new(add_default_currency),
    ))]
}

/// `{"TicketCreated": {...}}` at 1.0 → the same with `"currency": "usd"`.
fn add_default_currency(mut payload: Value) -> Value {
    if let Some(created) = payload
        .get_mut("TicketCreated")
        .and_then(Value::as_object_mut)
    {
        let _ = created
            .entry("currency")
            .or_insert_with(|| Value::String(DEFAULT_CURRENCY.to_owned()));
    }
    payload
}
