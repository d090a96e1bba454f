//! A buyer's order for one ticket, from placement until paid or ended.

mod aggregate;
mod commands;
mod error;
mod events;
#[cfg(test)]
mod tests;

pub use aggregate::{Order, OrderStatus, OrderTicket};
pub use commands::OrderCommand;
pub use error::OrderError;
pub use events::OrderEvent;
