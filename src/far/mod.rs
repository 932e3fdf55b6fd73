//! The air-gapped side: proving an archive whole ([`verify`]), pushing it
//! into a registry ([`load`]), serving it as one ([`serve`]), exporting
//! its images for runtimes without a registry ([`export`]), unpacking and
//! inspecting it ([`unpack`]), and the page people look at
//! ([`bundle_report`]). Uses
//! [`base`](crate::base), [`format`](crate::format) and
//! [`shared`](crate::shared), never [`connected`](crate::connected).

pub mod bundle_report;
pub mod export;
pub mod load;
pub mod serve;
pub mod unpack;
pub mod verify;
