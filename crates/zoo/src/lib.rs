//! Placeholder until the zoo branch lands.
#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    #[error("unknown built-in model `{name}`; known: {}", known.join(", "))]
    Unknown {
        name: String,
        known: Vec<&'static str>,
    },
}
pub fn names() -> &'static [&'static str] {
    &[]
}
pub fn build_bytes(name: &str) -> Result<Vec<u8>, ZooError> {
    Err(ZooError::Unknown {
        name: name.into(),
        known: vec![],
    })
}
pub fn describe(_name: &str) -> Option<&'static str> {
    None
}
pub fn default_input_shapes(_name: &str) -> Option<Vec<(&'static str, Vec<usize>)>> {
    None
}
