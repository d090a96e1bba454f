/// Why a [`TicketCommand`](crate::TicketCommand) was refused; the messages
/// are the HTTP API's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("Ticket already exists")]
    AlreadyExists,
    #[error("Not Found")]
    NotFound,
    #[error("Cannot edit a reserved ticket")]
    Reserved,
    #[error("Not authorized")]
    NotOwner,
    #[error("Ticket is already reserved")]
    AlreadyReserved,
}
