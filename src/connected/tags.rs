//! Choosing tags for image entries with `tags:` (the rule is described in
//! `inputs`): listing a repository's tags (`remote`, every page of
//! `/v2/NAME/tags/list`), applying the rule, and expanding the spec so that
//! each chosen tag becomes a plain registry entry `REPOSITORY:TAG`, which
//! `pack` then fetches and carries as any other.
//!
//! Order ("newest"): tags that are full SemVer (a leading `v` allowed)
//! rank above the rest, by version; the rest by natural order (digit runs
//! compared as numbers). Chosen tags are listed oldest first.

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::base::reference::Reference;
use crate::base::version::{parse_tag, Constraint};
use crate::connected::inputs::{ImageEntry, ImageSource, Spec, TagRule};
use crate::shared::remote::{Remote, RemoteError, RemoteOptions};

/// How many existing tags an error shows.
pub const NEAREST_SHOWN: usize = 5;

/// Why tags could not be chosen.
#[derive(Debug, thiserror::Error)]
pub enum TagsError {
    /// The rule chose no tag.
    #[error("image {image}: {rule} matches none of its {count} tags{}", nearest_note(.nearest))]
    NoMatch {
        /// The entry (its repository).
        image: String,
        /// The rule as written.
        rule: String,
        /// How many tags the repository has.
        count: usize,
        /// The nearest tags that exist.
        nearest: Vec<String>,
    },
    /// A tag a `tags:` list names does not exist.
    #[error("image {image}: tag {tag} (from {rule}) does not exist{}", nearest_note(.nearest))]
    Missing {
        /// The entry (its repository).
        image: String,
        /// The tag.
        tag: String,
        /// The rule as written.
        rule: String,
        /// The nearest tags that exist.
        nearest: Vec<String>,
    },
    /// The registry could not be asked.
    #[error("image {image}: cannot list its tags")]
    List {
        /// The entry (its repository).
        image: String,
        /// Why.
        #[source]
        source: RemoteError,
    },
    /// A rule that was checked when the spec was read no longer parses
    /// (a spec built by hand, not read).
    #[error("image {image}: {rule}: {why}")]
    Rule {
        /// The entry.
        image: String,
        /// The rule.
        rule: String,
        /// What is wrong.
        why: String,
    },
}

fn nearest_note(nearest: &[String]) -> String {
    if nearest.is_empty() {
        "; the repository has no tags".into()
    } else {
        format!("; the nearest that exist: {}", nearest.join(", "))
    }
}

/// The tags one entry's rule chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChosenTags {
    /// The entry (its repository).
    pub image: String,
    /// The rule as written.
    pub rule: String,
    /// The tags, oldest first.
    pub tags: Vec<String>,
}

/// Ranks two tags: SemVer tags above the rest, by version, then the rest
/// in natural order.
pub fn tag_order(a: &str, b: &str) -> Ordering {
    match (parse_tag(a), parse_tag(b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => natural(a, b).then_with(|| a.cmp(b)),
    }
}

/// Compares digit runs as numbers and everything else as text.
fn natural(a: &str, b: &str) -> Ordering {
    fn runs(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut digit = None;
        for (i, c) in s.char_indices() {
            let d = c.is_ascii_digit();
            if digit.is_some_and(|p| p != d) {
                out.push((digit == Some(true), s.get(start..i).unwrap_or("")));
                start = i;
            }
            digit = Some(d);
        }
        if let Some(d) = digit {
            out.push((d, s.get(start..).unwrap_or("")));
        }
        out
    }
    let (ra, rb) = (runs(a), runs(b));
    for (x, y) in ra.iter().zip(&rb) {
        let o = match (x, y) {
            ((true, p), (true, q)) => {
                let (p, q) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
                p.len().cmp(&q.len()).then_with(|| p.cmp(q))
            }
            ((_, p), (_, q)) => p.cmp(q),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ra.len().cmp(&rb.len())
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

/// The literal text a pattern starts with (after `^`), for "nearest".
fn literal_prefix(pattern: &str) -> String {
    let mut out = String::new();
    let mut chars = pattern.strip_prefix('^').unwrap_or(pattern).chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) if !e.is_ascii_alphanumeric() => out.push(e),
                _ => break,
            },
            '.' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '$' | '^' => break,
            c => out.push(c),
        }
    }
    out
}

/// The existing tags nearest to `hint` (sharing the longest prefix), else
/// the highest ones; at most [`NEAREST_SHOWN`].
fn nearest(all: &[String], hint: &str, versions_first: bool) -> Vec<String> {
    let mut pool: Vec<&String> = all.iter().collect();
    if versions_first && pool.iter().any(|t| parse_tag(t).is_some()) {
        pool.retain(|t| parse_tag(t).is_some());
    }
    pool.sort_by(|a, b| {
        common_prefix(b, hint)
            .cmp(&common_prefix(a, hint))
            .then_with(|| tag_order(b, a))
    });
    pool.into_iter().take(NEAREST_SHOWN).cloned().collect()
}

/// Applies `rule` of entry `image` to the repository's tags `all`.
pub fn select(image: &str, rule: &TagRule, all: &[String]) -> Result<Vec<String>, TagsError> {
    // A name the registry lists that is not a tag by the distribution spec
    // (too long, a space, a slash, a control character) cannot be pulled:
    // it is never a candidate, so `newest: 2` still gives two real tags.
    let all: Vec<String> = all
        .iter()
        .filter(|t| crate::base::reference::is_valid_tag(t))
        .cloned()
        .collect();
    let all = all.as_slice();
    let rule_text = rule.to_string();
    match rule {
        TagRule::List(wanted) => {
            for t in wanted {
                if !all.contains(t) {
                    return Err(TagsError::Missing {
                        image: image.to_owned(),
                        tag: t.clone(),
                        rule: rule_text,
                        nearest: nearest(all, t, false),
                    });
                }
            }
            Ok(wanted.clone())
        }
        TagRule::Select {
            semver,
            regex,
            newest,
        } => {
            let bad = |why: String| TagsError::Rule {
                image: image.to_owned(),
                rule: rule_text.clone(),
                why,
            };
            let constraint = match semver {
                Some(c) => Some(Constraint::parse(c).map_err(bad)?),
                None => None,
            };
            let re = match regex {
                Some(r) => Some(TagRule::compile_regex(r).map_err(|e| bad(e.to_string()))?),
                None => None,
            };
            let mut chosen: Vec<String> = all
                .iter()
                .filter(|t| match &constraint {
                    Some(c) => parse_tag(t).is_some_and(|v| c.matches(&v)),
                    None => true,
                })
                .filter(|t| re.as_ref().is_none_or(|re| re.is_match(t)))
                .cloned()
                .collect();
            chosen.sort_by(|a, b| tag_order(a, b));
            chosen.dedup();
            if let Some(n) = newest {
                let skip = chosen.len().saturating_sub(*n);
                chosen.drain(..skip);
            }
            if chosen.is_empty() {
                let hint = regex.as_deref().map(literal_prefix).unwrap_or_default();
                return Err(TagsError::NoMatch {
                    image: image.to_owned(),
                    rule: rule_text,
                    count: all.len(),
                    nearest: nearest(all, &hint, constraint.is_some()),
                });
            }
            Ok(chosen)
        }
    }
}

/// Lists the tags of every entry with `tags:` and chooses them: one
/// `Some` per such entry, by position in `spec.images`.
pub async fn choose_all(
    spec: &Spec,
    opts: &RemoteOptions,
) -> Result<Vec<Option<ChosenTags>>, TagsError> {
    let mut remotes: HashMap<String, Remote> = HashMap::new();
    let mut out = Vec::new();
    for e in &spec.images {
        let (ImageSource::Registry(r), Some(rule)) = (&e.source, &e.tags) else {
            out.push(None);
            continue;
        };
        let image = e.label();
        let list_err = |source| TagsError::List {
            image: image.clone(),
            source,
        };
        let host = r.registry().to_owned();
        if !remotes.contains_key(&host) {
            let remote = Remote::connect(&host, opts).await.map_err(list_err)?;
            remotes.insert(host.clone(), remote);
        }
        let Some(remote) = remotes.get(&host) else {
            continue;
        };
        let all = remote.list_tags(r.repository()).await.map_err(list_err)?;
        let tags = select(&image, rule, &all)?;
        out.push(Some(ChosenTags {
            image,
            rule: rule.to_string(),
            tags,
        }));
    }
    Ok(out)
}

/// `spec` with each entry with `tags:` replaced by one plain entry per
/// chosen tag (same platforms), in place.
pub fn expand(spec: &Spec, chosen: &[Option<ChosenTags>]) -> Spec {
    let mut out = spec.clone();
    out.images.clear();
    for (i, e) in spec.images.iter().enumerate() {
        match (&e.source, chosen.get(i).and_then(Option::as_ref)) {
            (ImageSource::Registry(r), Some(c)) => {
                for t in &c.tags {
                    let Ok(reference) = format!("{}:{t}", r.name()).parse::<Reference>() else {
                        continue;
                    };
                    out.images.push(ImageEntry {
                        source: ImageSource::Registry(reference),
                        platforms: e.platforms.clone(),
                        name: None,
                        tags: None,
                        budget: e.budget,
                        referrers: e.referrers,
                        verify: e.verify.clone(),
                    });
                }
            }
            _ => out.images.push(e.clone()),
        }
    }
    out
}

/// Whether any entry of `spec` has `tags:`.
pub fn has_rules(spec: &Spec) -> bool {
    spec.images.iter().any(|e| e.tags.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn sel(semver: Option<&str>, regex: Option<&str>, newest: Option<usize>) -> TagRule {
        TagRule::Select {
            semver: semver.map(Into::into),
            regex: regex.map(Into::into),
            newest,
        }
    }

    const REPO: &[&str] = &["1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0", "latest"];

    #[test]
    fn names_that_are_not_tags_are_never_chosen() {
        let long = "9".repeat(300);
        let all = tags(&[
            &long,
            "a b",
            "../x",
            "v1.0.0?x=1",
            "2.0.0",
            "1.0.0",
            "1.1.0",
        ]);
        let got = select("img", &sel(None, None, Some(2)), &all).unwrap();
        assert_eq!(got, ["1.1.0", "2.0.0"]);
        let any = select("img", &sel(None, Some(".*"), None), &all).unwrap();
        assert_eq!(any.len(), 3, "{any:?}");
    }

    #[test]
    fn semver_newest_and_regex_combine() {
        let all = tags(REPO);
        let pick = |r: TagRule| select("x", &r, &all).unwrap();
        assert_eq!(pick(sel(Some("^1"), None, None)), tags(&["1.0.0", "1.1.0"]));
        assert_eq!(pick(sel(Some("^1"), None, Some(1))), tags(&["1.1.0"]));
        assert_eq!(
            pick(sel(Some(">=1.2.0-rc.0 <3"), None, None)),
            tags(&["1.2.0-rc.1", "2.0.0"])
        );
        assert_eq!(
            pick(sel(None, Some(r"^1\.\d+\.0$"), None)),
            tags(&["1.0.0", "1.1.0"])
        );
        // Alone, `newest` ranks by version too (a pre-release below its release).
        assert_eq!(
            pick(sel(None, None, Some(2))),
            tags(&["1.2.0-rc.1", "2.0.0"])
        );
        // `latest` is a tag name like any other, not "newest".
        assert_eq!(pick(sel(None, Some("^latest$"), None)), tags(&["latest"]));
        assert_eq!(
            pick(TagRule::List(tags(&["2.0.0", "latest"]))),
            tags(&["2.0.0", "latest"])
        );
    }

    #[test]
    fn v_prefixed_tags_are_versions() {
        let all = tags(&["v1.0.0", "v1.10.0", "v1.9.0", "1.2"]);
        let r = sel(Some("^1"), None, Some(2));
        assert_eq!(select("x", &r, &all).unwrap(), tags(&["v1.9.0", "v1.10.0"]));
    }

    #[test]
    fn a_rule_matching_nothing_names_the_image_the_rule_and_the_nearest_tags() {
        let all = tags(REPO);
        let e = select("reg/app", &sel(Some("^3"), None, None), &all).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("image reg/app"), "{msg}");
        assert!(msg.contains(r#"semver "^3""#), "{msg}");
        assert!(msg.contains("2.0.0, 1.2.0-rc.1, 1.1.0, 1.0.0"), "{msg}");
        let e = select("reg/app", &sel(None, Some(r"^1\.1\.9"), None), &all).unwrap_err();
        assert!(e.to_string().contains("nearest that exist: 1.1.0,"), "{e}");
        let e = select("reg/app", &TagRule::List(tags(&["1.1"])), &all).unwrap_err();
        assert!(e.to_string().contains("tag 1.1 "), "{e}");
        let e = select("reg/app", &sel(None, None, Some(1)), &[]).unwrap_err();
        assert!(e.to_string().contains("has no tags"), "{e}");
    }

    #[test]
    fn natural_order_for_other_tags() {
        let mut t = tags(&["build-10", "build-9", "build-100"]);
        t.sort_by(|a, b| tag_order(a, b));
        assert_eq!(t, tags(&["build-9", "build-10", "build-100"]));
    }
}
