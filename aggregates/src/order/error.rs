/// Why an [`OrderCommand`](crate::OrderCommand) was refused; the messages
/// are the HTTP API's, verbatim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("Order already exists")]
    AlreadyExists,
    #[error("Not Found")]
    NotFound,
    #[error("Not authorized")]
    NotOwner,
    #[error("Cannot cancel a completed order")]
    AlreadyComplete,
    // The grammar is the contract's exact message.
    #[error("Cannot pay for an cancelled order")]
    Cancelled,
    #[error("Order has already been paid")]
    AlreadyPaid,
    #[error("Order has not expired yet")]
    NotYetExpired,
    #[error("A payment for this order is already in progress")]
    PaymentInProgress,
    #[error("This payment is not the order's payment in flight")]
    PaymentNotInFlight,
    #[error("Too many failed payment attempts for this order")]
    TooManyPaymentAttempts,
}
