//! Error messages for people: an error and its chain of causes on one
//! line, the form every command's report and every per-blob failure uses.

/// The error's message followed by its causes.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
