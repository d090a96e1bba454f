//! The REST gateway of ticketing: the API of `docs/api-contract.md` over
//! the event-sourced aggregates.
//!
//! Handlers are thin: authenticate, parse the body into domain types, run a
//! command through the event store's executor, map the result. Business rules
//! live in `ticketing-aggregates`; errors map to the contract in `error`.

mod auth_limits;
mod client_address;
mod conditional;
mod consistency;
mod current_user;
mod email;
mod error;
mod header_deadline;
mod http_server;
mod http_telemetry;
mod idempotency;
mod janitor;
mod json_body;
mod openapi;
mod order_cap;
mod page_cache;
mod pagination;
mod password;
mod precompressed;
mod request_context;
mod revocation;
mod routes;
mod session;
mod settings;
mod shedding;
mod startup;
mod state;
mod views;

pub use auth_limits::{AuthLimits, Rate};
pub use client_address::ClientAddressSource;
pub use http_server::HttpLimits;
pub use openapi::{openapi_document, openapi_json};
pub use page_cache::ReadGeneration;
pub use routes::health::answers as database_answers;
pub use settings::GatewaySettings;
pub use shedding::BacklogGauge;
pub use startup::{Application, MetricsRender, ReadinessCheck};
