//! The format: what a ferry archive is, independent of where its content
//! came from or where it goes. OCI documents and graph walks ([`oci`]),
//! bundle.json ([`bundle`]), its minisign signature ([`sign`]), the
//! content-addressed store ([`layout`]), the one blob path (sources, sinks,
//! the verifying reader and copy: [`blob`]), the archive itself in every
//! physical form ([`archive`]), and what images take unpacked, told from
//! their layers' headers and trailers ([`sizes`]), and cosign signatures
//! checked offline ([`cosign`]). Uses only [`base`](crate::base).

pub mod archive;
pub mod blob;
pub mod bundle;
pub mod cosign;
pub mod layout;
pub mod oci;
pub mod sign;
pub mod sizes;
