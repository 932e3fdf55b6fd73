//! The little DER reading cosign verification needs beyond what ring and
//! webpki do: splitting a SubjectPublicKeyInfo into its algorithm and key
//! bits, and reading a certificate's subject and subjectAltName for
//! messages and identity matching. Definite lengths only, as DER requires;
//! every read is bounds-checked.

// Parses untrusted input: no indexing that could panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

/// Universal SEQUENCE.
pub(crate) const SEQUENCE: u8 = 0x30;
/// Universal SET.
const SET: u8 = 0x31;
/// Universal OBJECT IDENTIFIER.
pub(crate) const OID: u8 = 0x06;
/// Universal BIT STRING.
const BIT_STRING: u8 = 0x03;
/// Universal OCTET STRING.
const OCTET_STRING: u8 = 0x04;
/// Universal BOOLEAN.
const BOOLEAN: u8 = 0x01;

/// A reader over DER bytes, one element at a time.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next element: its tag and contents.
    pub(crate) fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, after) = self.rest.split_first()?;
        let (&first, mut after) = after.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let (bytes, more) = after.split_at_checked(n)?;
            after = more;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        let (contents, rest) = after.split_at_checked(len)?;
        self.rest = rest;
        Some((tag, contents))
    }

    /// The next element, which must have `tag`.
    pub(crate) fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.next()? {
            (t, c) if t == tag => Some(c),
            _ => None,
        }
    }
}

/// A SubjectPublicKeyInfo split into the contents of its algorithm
/// identifier (without the outer SEQUENCE, as webpki's algorithms name
/// them) and its key bits.
pub(crate) fn split_spki(spki: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut outer = Reader::new(spki);
    let body = outer.expect(SEQUENCE)?;
    if !outer.is_empty() {
        return None;
    }
    let mut r = Reader::new(body);
    let alg = r.expect(SEQUENCE)?;
    let bits = r.expect(BIT_STRING)?;
    if !r.is_empty() {
        return None;
    }
    match bits.split_first()? {
        (0, key) => Some((alg, key)),
        _ => None,
    }
}

/// What a certificate says about who it names.
#[derive(Debug, Default, Clone)]
pub(crate) struct Names {
    /// The subject, `CN=…, O=…` in encoded order; empty when the subject is.
    pub(crate) subject: String,
    /// subjectAltName entries: e-mail addresses, URIs and DNS names.
    pub(crate) sans: Vec<String>,
}

/// The `tbsCertificate` fields of `cert`, in order, after the optional
/// version.
fn tbs_fields(cert: &[u8]) -> Option<Reader<'_>> {
    let mut outer = Reader::new(cert);
    let body = outer.expect(SEQUENCE)?;
    let tbs = Reader::new(body).expect(SEQUENCE)?;
    Some(Reader::new(tbs))
}

/// The subject and subjectAltName of a DER certificate. `None` when the
/// bytes are not a certificate.
pub(crate) fn names(cert: &[u8]) -> Option<Names> {
    let mut r = tbs_fields(cert)?;
    let (mut tag, _) = r.next()?;
    if tag == 0xa0 {
        // version, then serialNumber
        (tag, _) = r.next()?;
    }
    if tag != 0x02 {
        return None;
    }
    r.expect(SEQUENCE)?; // signature algorithm
    r.expect(SEQUENCE)?; // issuer
    r.expect(SEQUENCE)?; // validity
    let subject = r.expect(SEQUENCE)?;
    r.expect(SEQUENCE)?; // subjectPublicKeyInfo
    let mut out = Names {
        subject: dn_string(subject),
        sans: Vec::new(),
    };
    while let Some((tag, contents)) = r.next() {
        if tag != 0xa3 {
            continue;
        }
        let mut exts = Reader::new(Reader::new(contents).expect(SEQUENCE)?);
        while let Some(ext) = exts.expect(SEQUENCE) {
            let mut e = Reader::new(ext);
            let oid = e.expect(OID)?;
            let (mut tag, mut value) = e.next()?;
            if tag == BOOLEAN {
                (tag, value) = e.next()?;
            }
            if tag != OCTET_STRING || oid != OID_SAN {
                continue;
            }
            let mut names = Reader::new(Reader::new(value).expect(SEQUENCE)?);
            while let Some((tag, name)) = names.next() {
                // rfc822Name [1], dNSName [2], uniformResourceIdentifier [6]
                if matches!(tag, 0x81 | 0x82 | 0x86) {
                    out.sans.push(String::from_utf8_lossy(name).into_owned());
                }
            }
        }
    }
    Some(out)
}

/// subjectAltName, 2.5.29.17.
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

/// A distinguished name as `CN=…, O=…`, in encoded order. Attributes
/// without a short name are shown by dotted OID.
fn dn_string(dn: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut rdns = Reader::new(dn);
    while let Some(set) = rdns.expect(SET) {
        let mut atvs = Reader::new(set);
        while let Some(atv) = atvs.expect(SEQUENCE) {
            let mut a = Reader::new(atv);
            let (Some(oid), Some((_, value))) = (a.expect(OID), a.next()) else {
                continue;
            };
            let name = match oid {
                [0x55, 0x04, 0x03] => "CN".to_owned(),
                [0x55, 0x04, 0x06] => "C".to_owned(),
                [0x55, 0x04, 0x07] => "L".to_owned(),
                [0x55, 0x04, 0x08] => "ST".to_owned(),
                [0x55, 0x04, 0x0a] => "O".to_owned(),
                [0x55, 0x04, 0x0b] => "OU".to_owned(),
                [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress".to_owned(),
                other => dotted(other),
            };
            parts.push(format!("{name}={}", String::from_utf8_lossy(value)));
        }
    }
    parts.join(", ")
}

/// An OID's dotted form, for attributes without a short name.
fn dotted(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in oid {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_and_overlong_elements_are_refused_not_read_past() {
        assert!(Reader::new(&[0x30, 0x05, 1, 2]).next().is_none());
        assert!(Reader::new(&[0x30, 0x85, 1, 1, 1, 1, 1]).next().is_none());
        assert!(Reader::new(&[0x30]).next().is_none());
        assert!(split_spki(&[0x30, 0x03, 0x30, 0x01, 0x00]).is_none());
        assert!(names(b"not a certificate").is_none());
    }

    #[test]
    fn dotted_oids_read_like_openssl_prints_them() {
        assert_eq!(
            dotted(&[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03]),
            "1.3.6.1.5.5.7.3.3"
        );
    }
}
