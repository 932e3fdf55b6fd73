//! Error messages for people: an error and its chain of causes on one
//! line, the form every command's report and every per-blob failure uses.

/// The error's message followed by its causes.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `text` on one line of at most about `max` bytes: control characters
/// (line breaks, escape sequences) escaped as `\u{..}`, trailing white
/// space dropped, and anything past `max` left out with a note of how
/// much. For text that arrived from the network (a server's error body),
/// which may be long or try to clear a terminal or forge a line.
pub fn one_line(text: &str, max: usize) -> String {
    let text = text.trim_end();
    let mut out = String::new();
    for (i, c) in text.char_indices() {
        let before = out.len();
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
        if out.len() > max {
            out.truncate(before);
            let rest = text.get(i..).map_or(0, |r| r.chars().count());
            out.push_str(&format!("… ({rest} more characters not shown)"));
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_escapes_control_characters_and_cuts_long_text() {
        assert_eq!(one_line("plain text\n", 100), "plain text");
        assert_eq!(one_line("a\nb\r\u{1b}[2J", 100), "a\\u{a}b\\u{d}\\u{1b}[2J");
        let long = "x".repeat(1000);
        let shown = one_line(&long, 100);
        assert_eq!(
            shown,
            format!("{}… (900 more characters not shown)", "x".repeat(100))
        );
        // An escape is never cut in half, and the bound holds for escapes.
        let shown = one_line(&"\n\u{1b}x".repeat(1000), 100);
        assert!(shown.starts_with("\\u{a}\\u{1b}x\\u{a}"), "{shown}");
        assert!(shown.len() < 100 + 40, "{shown}");
        assert!(!shown.chars().any(char::is_control));
    }
}
