//! The charge settling an order, as requested from and reported by Stripe.

mod aggregate;
mod commands;
mod error;
mod events;
#[cfg(test)]
mod tests;

pub use aggregate::{Payment, PaymentStatus};
pub use commands::PaymentCommand;
pub use error::PaymentError;
pub use events::PaymentEvent;
