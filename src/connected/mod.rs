//! The connected side: reading the spec ([`inputs`]), local image sources
//! ([`source`]), fetching registry images into the cache ([`fetch`]) and
//! keeping that cache in bounds ([`cache`]),
//! charts as OCI artifacts (`chart`) and from Helm repositories
//! (`helm_repo`), writing the archive ([`pack`]), and copying registry to
//! registry with no archive ([`mirror`]). Uses
//! [`base`](crate::base), [`format`](crate::format) and
//! [`shared`](crate::shared), never [`far`](crate::far).

pub mod cache;
pub(crate) mod chart;
pub mod fetch;
pub(crate) mod helm_repo;
pub mod inputs;
pub mod lock;
pub mod mirror;
pub mod pack;
pub mod referrers;
pub mod source;
pub mod tags;
