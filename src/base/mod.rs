//! The bottom layer: what every other part of ferry uses and that uses
//! nothing of ferry's. Typed digests and streaming hashes ([`digest`]),
//! image references ([`reference`](mod@reference)) and platforms
//! ([`platform`]), versions and Helm's version constraints ([`version`]),
//! error chains for messages ([`error`]), the progress
//! trait ([`report`]) and the clean-up of
//! temp files on Ctrl-C ([`interrupt`]).

pub mod digest;
pub mod error;
pub mod interrupt;
pub mod platform;
pub mod reference;
pub mod report;
pub mod version;
