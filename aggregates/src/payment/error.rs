/// Why a [`PaymentCommand`](crate::PaymentCommand) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("Payment already requested")]
    AlreadyExists,
    #[error("Not Found")]
    NotFound,
    #[error("Payment already settled")]
    AlreadySettled,
}
