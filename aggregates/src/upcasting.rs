//! The upcasters of every aggregate type, for whoever reads stored events:
//! the event store's executor (loading aggregates) and the replay tools
//! (publishing and rebuilding from the store).

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::Aggregate;

use crate::{ticket, Ticket};

/// The upcasters of `aggregate_type`'s events (none for a type whose events
/// never changed shape).
#[must_use]
pub fn upcasters_for(aggregate_type: &str) -> Vec<Box<dyn EventUpcaster>> {
    match aggregate_type {
        Ticket::TYPE => ticket::upcasters(),
        _ => Vec::new(),
    }
}

/// `event` lifted to the current version of its type, through every
/// upcaster that applies, in order.
#[must_use]
pub fn upcast(event: SerializedEvent) -> SerializedEvent {
    upcasters_for(&event.aggregate_type)
        .iter()
        .fold(event, |event, upcaster| {
            if upcaster.can_upcast(&event.event_type, &event.event_version) {
                upcaster.upcast(event)
            } else {
                event
            }
        })
}
