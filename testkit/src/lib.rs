//! Fault-injection tools for tests against the real PostgreSQL and the
//! real broker.
//!
//! [`OwnedBroker`] is a broker of the test's own, to kill or restart;
//! [`eventually`] waits on an outcome; [`brokers`] names the shared broker;
//! [`init_test_logs`] shows the logs when `TEST_LOG` is set.
//!
//!
//! [`PgProxy`] sits between an application's pool and the server and
//! forwards bytes unchanged, reading the wire protocol only far enough
//! (a tag byte and an `i32` length per message) to spot a `COMMIT`, or the
//! execution of a prepared statement by its text. Armed, it forwards that
//! `COMMIT` (or execution), swallows the server's reply and cuts the
//! connection: the transaction is committed and the client cannot know.
//! Or it holds a `COMMIT` back until the test lets it go: a commit slower
//! than any bound, with its transaction open on the server meanwhile.

mod broker;
mod logs;
mod proxy;
mod wait;

pub use broker::OwnedBroker;
pub use logs::init_test_logs;
pub use proxy::PgProxy;
pub use wait::{brokers, eventually};
