//! A ticket offered for resale, and its reservation by at most one order.

mod aggregate;
mod commands;
mod error;
mod events;
#[cfg(test)]
mod tests;
mod upcasters;

pub use aggregate::Ticket;
pub use commands::TicketCommand;
pub use error::TicketError;
pub use events::TicketEvent;
pub use upcasters::{upcasters, DEFAULT_CURRENCY};
