//! The pure domain of the ticketing resale backend.
//!
//! Three event-sourced aggregates for [`cqrs_es`]: a [`Ticket`] being resold,
//! the [`Order`] a buyer places on it and the [`Payment`] settling that order.
//! Each aggregate decides in `handle`, where every business rule lives, and
//! only assigns state in `apply`, so replaying stored events can never fail
//! or change a past decision.
//!
//! Aggregates never talk to each other or to the outside world: the
//! application layer reads one aggregate and passes what it needs to the
//! next as command data (an [`OrderTicket`] snapshot, the current time for
//! [`OrderCommand::Expire`], the Stripe charge id for
//! [`PaymentCommand::Succeed`]). That keeps this crate free of I/O and makes
//! every rule testable with given/when/then.
//!
//! Commands that would repeat something already done (re-reserving for the
//! same order, releasing a reservation that is not held, cancelling a
//! cancelled order, …) succeed with no events, so callers can retry safely.
//!
//! Values that cross the API boundary are validated once, on construction:
//! [`Money`] is exact cents and [`Title`] is trimmed and bounded.

pub mod money;
pub mod order;
pub mod payment;
pub mod ticket;
pub mod title;
pub mod upcasting;

pub use money::{Money, PriceError};
pub use order::{Order, OrderCommand, OrderError, OrderEvent, OrderStatus, OrderTicket};
pub use payment::{Payment, PaymentCommand, PaymentError, PaymentEvent, PaymentStatus};
pub use ticket::{Ticket, TicketCommand, TicketError, TicketEvent};
pub use title::{Title, TitleError};
