//! ferry carries container images, Helm charts and files across an air gap
//! in one content-addressed, verifiable OCI image layout archive.
//!
//! The library does the work and never prints or exits; the `ferry` binary
//! is a thin front end over it. The modules sit in five layers, each using
//! only the layers before it (ARCHITECTURE.md has the map, and a test
//! holds the code to it):
//!
//! 1. [`base`]: digests, references, platforms, progress, interrupts;
//! 2. [`format`](mod@format): OCI documents, bundle.json, signatures, the store and
//!    the archive in every form;
//! 3. [`shared`]: the registry client, target naming, inventories and the
//!    YAML image-reference rewriter, used on both sides;
//! 4. [`connected`] (spec, sources, fetch, the cache, charts, pack) and
//!    [`far`] (verify, load, serve, export, unpack, the bundle report),
//!    which never use each other.

pub mod base;
pub mod connected;
pub mod far;
pub mod format;
pub mod shared;

// The flat paths (`ferry::digest`, `ferry::archive`, …) are the public
// API the binary, the tests and the fuzz targets use; the folders above
// are the design (see ARCHITECTURE.md).
pub use base::{digest, interrupt, platform, reference, report, version};
pub use connected::{cache, fetch, inputs, lock, mirror, pack, referrers, source, tags};
pub use far::{bundle_report, export, load, serve, unpack, verify};
pub use format::{archive, bundle, cosign, layout, oci, sign, sizes};
pub use shared::{diff, inventory, mapping, push, referrer_push, remote, rewrite};
