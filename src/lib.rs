//! ferry carries container images, Helm charts and files across an air gap
//! in one content-addressed, verifiable OCI image layout archive.
//!
//! The library does the work and never prints or exits; the `ferry` binary
//! is a thin front end over it. Modules, from the bottom up:
//! [`digest`] (typed digests, streaming hashes), [`reference`](mod@reference) and
//! [`platform`] (names), [`inputs`] (the spec file), [`oci`] (manifest
//! documents and graph walks), [`layout`] (the content-addressed store),
//! [`source`] (local image sources), [`chart`] (charts as OCI artifacts,
//! the images they name), [`remote`] (the registry client: credentials,
//! transport, retries), [`fetch`] (registry images into the cache),
//! [`repo`] (Helm chart repositories), [`bundle`] (bundle.json), [`sign`]
//! (minisign signatures of bundle.json),
//! [`archive`] (deterministic tar writing, safe reading), [`pack`],
//! [`verify`], [`unpack`] (also `inspect`), [`mapping`] (target repository
//! names), [`load`] (pushing into a registry), [`serve`] (read-only
//! registry), [`rewrite`] (image references in YAML), and [`report`]
//! (progress).

pub mod archive;
pub mod bundle;
pub mod chart;

pub mod digest;
pub mod fetch;
pub mod inputs;
pub mod interrupt;
pub mod inventory;
pub mod layout;
pub mod load;
pub mod mapping;
pub mod oci;
pub mod pack;
pub mod platform;
pub mod reference;
pub mod remote;
pub mod repo;
pub mod report;
pub mod rewrite;
pub mod serve;
pub mod sign;
pub mod source;
pub mod unpack;
pub mod verify;
