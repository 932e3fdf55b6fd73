//! What both sides of the air gap use: the registry client ([`remote`]),
//! the registry as a sink ([`push`]: blobs, then manifests, then tags),
//! the naming of targets ([`mapping`]), inventories of what a registry or
//! bundle holds ([`inventory`]), and the finding and rewriting of image
//! references in YAML ([`rewrite`]), which `pack` uses to find a chart's
//! images and a spec's `from:` images, `ferry images` to list them,
//! `ferry rewrite` to point manifests at the far registry, and `load` to
//! write an installer's override; and what changed between two bundles
//! ([`diff`]), for either side.
//! Uses [`base`](crate::base) and [`format`](crate::format).

pub mod diff;
pub mod inventory;
pub mod mapping;
pub mod push;
pub mod referrer_push;
pub mod remote;
pub mod rewrite;
pub mod transport;
