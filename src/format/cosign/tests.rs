use super::*;

#[test]
fn pae_matches_the_dsse_spec_example() {
    assert_eq!(
        bundle::pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
}

#[test]
fn base64_with_line_breaks_and_either_alphabet_decodes() {
    assert_eq!(base64_bytes("aGVs\nbG8=").unwrap(), b"hello");
    assert_eq!(base64_bytes("aGVsbG8").unwrap(), b"hello");
    assert_eq!(base64_bytes("-_8=").unwrap(), vec![0xfb, 0xff]);
    assert!(base64_bytes("not base64!").is_err());
}

#[test]
fn references_normalise_without_inventing_a_tag() {
    assert_eq!(normalise_reference("nginx"), "docker.io/library/nginx");
    assert_eq!(normalise_reference("localhost:5000/a"), "localhost:5000/a");
    assert_eq!(
        normalise_reference("nginx:1.25"),
        "docker.io/library/nginx:1.25"
    );
    assert_eq!(normalise_reference("Not A Reference"), "Not A Reference");
}

#[test]
fn the_reference_check_compares_repositories_unless_a_tag_is_asked_for() {
    let key = PublicKey::from_pem(
        b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFNLqFhf4fiN6o/glAuYnq2jYUeL0\nvRuLu/z39pmbVwS9ff5AYnlwaP9sxREajdLY9ynM6G1sy6AAmb7Z63TsLg==\n-----END PUBLIC KEY-----\n",
        "k.pub",
    )
    .unwrap();
    let d = Digest::of(b"x");
    let policy = |r: &str| Policy {
        trust: Trust::Key(key.clone()),
        reference: Some(r.to_owned()),
    };
    assert!(check_reference(&d, Some("nginx"), &policy("docker.io/library/nginx")).is_ok());
    assert!(check_reference(&d, Some("nginx:1"), &policy("nginx")).is_ok());
    assert!(check_reference(&d, Some("nginx"), &policy("nginx:1")).is_err());
    assert!(check_reference(&d, None, &policy("nginx")).is_err());
    assert!(check_reference(&d, Some("other/nginx"), &policy("nginx")).is_err());
}
