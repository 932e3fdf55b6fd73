//! Versions and version constraints, as Helm reads them (Masterminds
//! semver) and as ferry applies them both to chart versions and to image
//! tags: SemVer with an optional leading `v`; constraints written as an
//! exact version, `^1.2`, `~1.2.3`, `>=1.2 <2` (or with commas), `1.2.x`,
//! `*`, ranges `1.2 - 1.4`, and alternatives with `||`. A pre-release
//! matches only a constraint that names a pre-release of the same
//! `MAJOR.MINOR.PATCH` (the `semver` crate's rule, which agrees with Helm
//! on every form above).

// Parses untrusted input: no indexing that could panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

/// A chart version as Helm reads it: a leading `v` and a missing minor or
/// patch number (`1`, `1.2`) are allowed.
pub fn parse_lenient(v: &str) -> Option<semver::Version> {
    let v = v.trim().trim_start_matches('v');
    semver::Version::parse(v).ok().or_else(|| {
        let (core, rest) = match v.find(['-', '+']) {
            Some(i) => v.split_at(i),
            None => (v, ""),
        };
        let parts = core.split('.').count();
        let padded = match parts {
            1 => format!("{core}.0.0{rest}"),
            2 => format!("{core}.0{rest}"),
            _ => return None,
        };
        semver::Version::parse(&padded).ok()
    })
}

/// An image tag as a version: full SemVer `MAJOR.MINOR.PATCH[-PRE]`, with
/// or without one leading `v`. Short tags (`1`, `1.2`) are not versions
/// here: registries use them as moving aliases of the newest patch.
pub fn parse_tag(tag: &str) -> Option<semver::Version> {
    semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

/// A parsed constraint: one `semver` requirement per `||` alternative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint(Vec<semver::VersionReq>);

impl Constraint {
    /// Parses Helm's constraint syntax; `Err` says what is wrong.
    pub fn parse(constraint: &str) -> Result<Constraint, String> {
        let mut out = Vec::new();
        for alt in constraint.split("||") {
            let alt = alt.trim();
            if alt.is_empty() || alt == "*" || alt == "x" {
                out.push(semver::VersionReq::STAR);
                continue;
            }
            // Hyphen range: `1.2 - 1.4`.
            let comparators: Vec<String> = if let Some((lo, hi)) = alt.split_once(" - ") {
                vec![format!(">={}", lo.trim()), format!("<={}", hi.trim())]
            } else {
                // Join an operator to the version after it (`>= 1.2`).
                let mut parts: Vec<String> = Vec::new();
                for tok in alt.split([' ', ',']).filter(|t| !t.is_empty()) {
                    match parts.last_mut() {
                        Some(last)
                            if matches!(
                                last.as_str(),
                                ">" | ">=" | "<" | "<=" | "=" | "~" | "^" | "!="
                            ) =>
                        {
                            last.push_str(tok);
                        }
                        _ => parts.push(tok.to_owned()),
                    }
                }
                parts
            };
            let fixed: Vec<String> = comparators
                .into_iter()
                .map(|c| {
                    let c = c.replace(".x", ".*").replace(".X", ".*");
                    let op_len =
                        c.len() - c.trim_start_matches(['>', '<', '=', '~', '^', '!']).len();
                    let (op, v) = c.split_at(op_len);
                    let v = v.trim_start_matches('v');
                    if op.is_empty() && !v.contains('*') {
                        // A bare version is exact in Helm (caret in `semver`).
                        format!("={v}")
                    } else {
                        format!("{op}{v}")
                    }
                })
                .collect();
            if fixed.iter().any(|c| c.starts_with("!=")) {
                return Err("`!=` is not supported".into());
            }
            out.push(semver::VersionReq::parse(&fixed.join(", ")).map_err(|e| e.to_string())?);
        }
        Ok(Constraint(out))
    }

    /// Whether `v` meets one of the alternatives.
    pub fn matches(&self, v: &semver::Version) -> bool {
        self.0.iter().any(|r| r.matches(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_full_semver_with_or_without_v() {
        assert_eq!(parse_tag("v1.2.3"), parse_tag("1.2.3"));
        assert!(parse_tag("1.2").is_none());
        assert!(parse_tag("latest").is_none());
        assert!(parse_tag("2.8.3-alpine").is_some_and(|v| !v.pre.is_empty()));
        assert_eq!(parse_lenient("1.2"), parse_tag("1.2.0"));
    }

    #[test]
    fn pre_releases_only_when_named() {
        let c = Constraint::parse("^1").unwrap();
        assert!(c.matches(&parse_tag("1.1.0").unwrap()));
        assert!(!c.matches(&parse_tag("1.2.0-rc.1").unwrap()));
        assert!(!c.matches(&parse_tag("2.0.0").unwrap()));
        let named = Constraint::parse(">=1.2.0-rc.0 <2").unwrap();
        assert!(named.matches(&parse_tag("1.2.0-rc.1").unwrap()));
        assert!(Constraint::parse(">>1").is_err());
        assert!(Constraint::parse("!=1.0.0").is_err());
    }
}
