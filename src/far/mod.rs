//! The air-gapped side: proving an archive whole ([`verify`]), pushing it
//! into a registry ([`load`]), serving it as one ([`serve`]), exporting
//! its images for runtimes without a registry ([`export`]), and
//! unpacking and inspecting it ([`unpack`]). Uses
//! [`base`](crate::base), [`format`](crate::format) and
//! [`shared`](crate::shared), never [`connected`](crate::connected).

pub mod export;
pub mod load;
pub mod serve;
pub mod unpack;
pub mod verify;
