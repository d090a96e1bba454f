#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use chrono::Utc;
use ticketing_relay::{Cursor, FoldEvent, WirePayload};
use ticketing_schemas::{TicketCreatedV1, TicketEventV1, TicketReleasedV1, TicketReservedV1};

use super::{Rows, Written};
use crate::ProjectionError;

fn ticket(sequence: u64, event: TicketEventV1) -> FoldEvent {
    FoldEvent {
        cursor: Cursor::default(),
        aggregate_id: "t-1".to_owned(),
        sequence,
        global_position: sequence,
        timestamp: Utc::now(),
        event: WirePayload::Ticket(event),
    }
}

fn created() -> TicketEventV1 {
    TicketEventV1::TicketCreated(TicketCreatedV1 {
        title: "Concert".to_owned(),
        price_cents: 2_000,
        user_id: "u".to_owned(),
        currency: "usd".to_owned(),
    })
}

fn reserved(order: &str) -> TicketEventV1 {
    TicketEventV1::TicketReserved(TicketReservedV1 {
        order_id: order.to_owned(),
        expires_at: Utc::now(),
    })
}

fn released(order: &str) -> TicketEventV1 {
    TicketEventV1::TicketReleased(TicketReleasedV1 {
        order_id: order.to_owned(),
    })
}

#[test]
fn only_the_holding_orders_release_frees_a_ticket_and_the_version_moves_on() {
    let mut rows = Rows::default();
    rows.apply(ticket(1, created())).unwrap();
    rows.apply(ticket(2, reserved("o-1"))).unwrap();
    rows.apply(ticket(3, released("o-2"))).unwrap();
    let row = &rows.tickets["t-1"];
    assert_eq!(row.order_id.as_deref(), Some("o-1"));
    assert_eq!((row.version, row.last_sequence), (2, 3));
    rows.apply(ticket(4, released("o-1"))).unwrap();
    assert_eq!(rows.tickets["t-1"].order_id, None);
}

#[test]
fn a_repeated_event_changes_nothing_and_a_gap_is_an_error() {
    let mut rows = Rows::default();
    rows.apply(ticket(1, created())).unwrap();
    rows.apply(ticket(2, reserved("o-1"))).unwrap();
    let before = rows.tickets["t-1"].clone();
    rows.apply(ticket(2, reserved("o-9"))).unwrap();
    assert_eq!(rows.tickets["t-1"], before);
    assert!(matches!(
        rows.apply(ticket(4, released("o-1"))),
        Err(ProjectionError::Inconsistent {
            sequence: 4,
            last_sequence: 2,
            ..
        })
    ));
}

#[test]
fn an_update_without_a_creation_is_an_error() {
    let mut rows = Rows::default();
    assert!(matches!(
        rows.apply(ticket(2, reserved("o-1"))),
        Err(ProjectionError::Inconsistent { .. })
    ));
    assert!(matches!(
        rows.apply(ticket(3, created())),
        Err(ProjectionError::Inconsistent { .. })
    ));
}

#[test]
fn only_applied_events_mark_a_loaded_row_to_be_written() {
    let mut rows = Rows::default();
    rows.apply(ticket(1, created())).unwrap();
    assert_eq!(rows.tickets["t-1"].written, Written::CREATED);
    rows.tickets.get_mut("t-1").unwrap().written = Written::LOADED;
    rows.apply(ticket(1, created())).unwrap();
    assert_eq!(rows.tickets["t-1"].written, Written::LOADED, "a duplicate");
    assert!(!rows.needs_load(&ticket(2, reserved("o-1"))));
    rows.apply(ticket(2, reserved("o-1"))).unwrap();
    let written = rows.tickets["t-1"].written;
    assert!(written.stored && written.dirty);
    assert!(Rows::default().needs_load(&ticket(2, reserved("o-1"))));
    assert!(!Rows::default().needs_load(&ticket(1, created())));
}
