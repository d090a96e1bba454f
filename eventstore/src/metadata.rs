use std::collections::HashMap;

/// What is recorded with every event besides its payload: who asked, and
/// which request and conversation the change belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandMetadata {
    /// Stays the same across every event caused, directly or not, by one
    /// request.
    pub correlation_id: String,
    /// The id of the request or event that directly caused this command.
    pub causation_id: String,
    /// The signed-in user who issued the command, if any.
    pub user_id: Option<String>,
    /// W3C trace context of the command, so consumers continue its trace.
    pub traceparent: Option<String>,
}

impl CommandMetadata {
    pub(crate) fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::from([
            ("correlation_id".to_owned(), self.correlation_id.clone()),
            ("causation_id".to_owned(), self.causation_id.clone()),
        ]);
        if let Some(user_id) = &self.user_id {
            let _ = map.insert("user_id".to_owned(), user_id.clone());
        }
        if let Some(traceparent) = &self.traceparent {
            let _ = map.insert("traceparent".to_owned(), traceparent.clone());
        }
        map
    }
}
