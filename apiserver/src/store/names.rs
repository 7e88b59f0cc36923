//! Object name rules (`metadata.name`, `metadata.generateName`), as Kubernetes checks them.

use crate::schema::{ErrorKind, FieldError};

/// Longest DNS-1123 subdomain: most object names.
pub const MAX_SUBDOMAIN: usize = 253;
/// Longest DNS-1123 label: namespace names.
pub const MAX_LABEL: usize = 63;
/// Random characters `generateName` appends.
pub const GENERATED_SUFFIX_LEN: usize = 5;
/// The alphabet of generated suffixes (no vowels, no look-alikes), as the API server uses.
pub const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Which rule a name follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// Lowercase RFC 1123 subdomain (most kinds).
    Subdomain,
    /// Lowercase RFC 1123 label (namespaces).
    Label,
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Alphanumerics and `-`, starting and ending with an alphanumeric. (Kubernetes limits the
/// length of a label name, not of each dot-separated part of a subdomain.)
fn label_shaped(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && is_alnum(b[0]) && is_alnum(b[b.len() - 1]) && b.iter().all(|&c| is_alnum(c) || c == b'-')
}

/// Checks `name` at `path` (for example `metadata.name`) against `rule`.
pub fn check_name(name: &str, rule: NameRule, path: &str) -> Vec<FieldError> {
    let value = serde_json::Value::String(name.to_owned());
    let (ok, max, detail) = match rule {
        NameRule::Subdomain => (
            name.len() <= MAX_SUBDOMAIN && !name.is_empty() && name.split('.').all(label_shaped),
            MAX_SUBDOMAIN,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or \
             '.', and must start and end with an alphanumeric character (e.g. 'example.com')",
        ),
        NameRule::Label => (
            label_shaped(name),
            MAX_LABEL,
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and \
             must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')",
        ),
    };
    let mut errors = Vec::new();
    if name.is_empty() {
        errors.push(FieldError::new(
            path,
            ErrorKind::Required,
            None,
            "name or generateName is required".into(),
        ));
    } else if name.len() > max {
        errors.push(FieldError::new(
            path,
            ErrorKind::TooLong,
            None,
            format!("may not be more than {max} bytes"),
        ));
    } else if !ok {
        errors.push(FieldError::new(
            path,
            ErrorKind::Invalid,
            Some(&value),
            detail.into(),
        ));
    }
    errors
}

/// The name `generateName: prefix` gets: the prefix, cut so the result fits a label, and five
/// characters drawn from [`SUFFIX_ALPHABET`] by `random` (one byte per character).
pub fn generate_name(prefix: &str, random: [u8; GENERATED_SUFFIX_LEN]) -> String {
    let max_prefix = MAX_LABEL - GENERATED_SUFFIX_LEN;
    let mut cut = prefix.len().min(max_prefix);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    let suffix: String = random
        .iter()
        .map(|b| char::from(SUFFIX_ALPHABET[usize::from(*b) % SUFFIX_ALPHABET.len()]))
        .collect();
    format!("{}{suffix}", &prefix[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains() {
        for ok in ["a", "my-job", "a.b.c", "x1", &"a".repeat(253)] {
            assert!(
                check_name(ok, NameRule::Subdomain, "metadata.name").is_empty(),
                "{ok}"
            );
        }
        for bad in ["A", "-a", "a-", "a..b", "a_b", ".a", "a.", "a b"] {
            let e = check_name(bad, NameRule::Subdomain, "metadata.name");
            assert_eq!(e.len(), 1, "{bad}");
            assert_eq!(e[0].kind, ErrorKind::Invalid, "{bad}");
            assert!(e[0].to_string().starts_with(&format!(
                "metadata.name: Invalid value: \"{bad}\": a lowercase RFC 1123 subdomain"
            )));
        }
        let long = check_name(&"a".repeat(254), NameRule::Subdomain, "metadata.name");
        assert_eq!(
            long[0].to_string(),
            "metadata.name: Too long: may not be more than 253 bytes"
        );
        assert_eq!(
            check_name("", NameRule::Subdomain, "metadata.name")[0].kind,
            ErrorKind::Required
        );
    }

    #[test]
    fn labels_forbid_dots_and_length_over_63() {
        assert!(check_name("team-a", NameRule::Label, "metadata.name").is_empty());
        assert_eq!(check_name("a.b", NameRule::Label, "metadata.name").len(), 1);
        assert_eq!(
            check_name(&"a".repeat(64), NameRule::Label, "metadata.name")[0].kind,
            ErrorKind::TooLong
        );
    }

    #[test]
    fn generated_names_append_five_suffix_characters_and_stay_valid() {
        let name = generate_name("selfplay-", [0, 1, 2, 3, 26]);
        assert_eq!(name, "selfplay-bcdf9");
        let long = generate_name(&"p".repeat(100), [7; 5]);
        assert_eq!(long.len(), 63);
        assert!(check_name(&long, NameRule::Label, "metadata.name").is_empty());
    }
}
