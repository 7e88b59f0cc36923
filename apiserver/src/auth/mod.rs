//! Who a request comes from, what they may do, and the record of what they did:
//!
//! - x509 client certificates signed by a client CA: CN is the user, O the groups (as
//!   kube-apiserver reads them), checked first;
//! - bearer tokens: one administrator token (`--token`) and a static token file in the format of
//!   kube-apiserver's `--token-auth-file` (`token,user,uid[,"group1,group2"]` per line);
//! - [`node`]: the node restriction: an agent's credential writes only its own objects;
//! - [`rbac`]: Role-based access control over the stored Roles, ClusterRoles and their bindings,
//!   enforced when the server runs with `--authorization-mode RBAC`;
//! - [`audit`]: one JSON line per API request (user, verb, resource, response code).

pub mod audit;
pub mod node;
pub mod rbac;

use std::collections::BTreeMap;
use std::fmt;

/// The group whose members may do anything, as in Kubernetes.
pub const MASTERS: &str = "system:masters";

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User name, for example `system:serviceaccount:ringrift:ringrift-agent`.
    pub name: String,
    /// Groups.
    pub groups: Vec<String>,
}

/// The group every authenticated user is in.
pub const AUTHENTICATED: &str = "system:authenticated";

impl User {
    /// The user of a verified client certificate: its first common name, its organizations as
    /// groups. None without a common name (kube-apiserver refuses those too).
    pub fn from_certificate(info: &ringrift_tls::pki::CertInfo) -> Option<Self> {
        let name = info.common_names.first().filter(|n| !n.is_empty())?;
        let mut groups = info.organizations.clone();
        groups.push(AUTHENTICATED.into());
        Some(Self {
            name: name.clone(),
            groups,
        })
    }

    /// The administrator: what the `--token` holder and every client of a server without
    /// authentication are.
    pub fn admin() -> Self {
        Self {
            name: "admin".into(),
            groups: vec![MASTERS.into(), AUTHENTICATED.into()],
        }
    }

    /// Who a request without a token is when anonymous requests are allowed: subject to RBAC
    /// like anyone (bind roles to the group `system:unauthenticated` to let it do anything).
    pub fn anonymous() -> Self {
        Self {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        }
    }

    /// Whether RBAC is bypassed for this user.
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS)
    }
}

/// A line of a token file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFileError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for TokenFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for TokenFileError {}

/// The bearer tokens the server accepts, and whose they are.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tokens(BTreeMap<String, User>);

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the tokens themselves.
        f.debug_list().entries(self.0.values().map(|u| &u.name)).finish()
    }
}

/// Splits one CSV line into fields (double quotes group, `""` is a quote).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut current).trim().to_owned()),
            (c, _) => current.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    fields.push(current.trim().to_owned());
    Ok(fields)
}

impl Tokens {
    /// No tokens.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether any token is configured.
    pub fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// Adds the administrator token.
    #[must_use]
    pub fn with_admin(mut self, token: &str) -> Self {
        self.0.insert(token.to_owned(), User::admin());
        self
    }

    /// Reads a token file: `token,user,uid[,"group1,group2"]` per line; blank lines and lines
    /// starting with `#` are skipped.
    ///
    /// # Errors
    /// A line without a token or user, with an unterminated quote, or a token given twice.
    pub fn parse_file(mut self, text: &str) -> Result<Self, TokenFileError> {
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |reason: &str| TokenFileError {
                line: index + 1,
                reason: reason.to_owned(),
            };
            let fields = csv_fields(line).map_err(|r| error(&r))?;
            let (Some(token), Some(name)) = (fields.first(), fields.get(1)) else {
                return Err(error("expected token,user,uid[,\"groups\"]"));
            };
            if token.is_empty() || name.is_empty() {
                return Err(error("the token and the user name must not be empty"));
            }
            let mut groups: Vec<String> = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            groups.push(AUTHENTICATED.into());
            if let Some(sa) = name.strip_prefix("system:serviceaccount:")
                && let Some((ns, _)) = sa.split_once(':')
            {
                groups.push("system:serviceaccounts".into());
                groups.push(format!("system:serviceaccounts:{ns}"));
            }
            let user = User {
                name: name.clone(),
                groups,
            };
            if self.0.insert(token.clone(), user).is_some() {
                return Err(error("this token is given twice"));
            }
        }
        Ok(self)
    }

    /// The user a bearer token belongs to; an unknown or missing token is nobody.
    pub fn authenticate(&self, bearer: Option<&str>) -> Option<User> {
        let given = bearer?;
        self.0
            .iter()
            .find(|(token, _)| ringrift_tls::secret::same(token.as_bytes(), given.as_bytes()))
            .map(|(_, user)| user.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_lines_become_users_with_groups() {
        let tokens = Tokens::none()
            .with_admin("root-token")
            .parse_file("# comment\n\nt1,system:serviceaccount:rr:agent,uid1\nt2,alice,uid2,\"dev,ops\"\n")
            .unwrap();
        let agent = tokens.authenticate(Some("t1")).unwrap();
        assert_eq!(agent.name, "system:serviceaccount:rr:agent");
        assert!(agent.groups.contains(&"system:serviceaccounts:rr".to_owned()));
        assert!(!agent.is_master());
        let alice = tokens.authenticate(Some("t2")).unwrap();
        assert!(alice.groups.contains(&"dev".to_owned()) && alice.groups.contains(&"ops".to_owned()));
        assert!(tokens.authenticate(Some("root-token")).unwrap().is_master());
        assert_eq!(tokens.authenticate(Some("nope")), None);
        assert_eq!(tokens.authenticate(None), None);
        assert!(!format!("{tokens:?}").contains("t1"), "Debug never shows tokens");
    }

    #[test]
    fn no_tokens_means_no_token_user() {
        assert_eq!(Tokens::none().authenticate(None), None);
        assert_eq!(Tokens::none().authenticate(Some("x")), None);
    }

    #[test]
    fn certificate_users_are_their_common_name_in_their_organizations() {
        let ca = ringrift_tls::pki::Ca::generate("ca", 1_800_000_000).unwrap();
        let pem = ca.client("alice", Some("ops"), 1_800_000_000, 3600).unwrap();
        let user = User::from_certificate(&pem.info().unwrap()).unwrap();
        assert_eq!(user.name, "alice");
        assert_eq!(user.groups, ["ops", AUTHENTICATED]);
        let admin = ca.client("admin", Some(MASTERS), 1_800_000_000, 3600).unwrap();
        assert!(
            User::from_certificate(&admin.info().unwrap())
                .unwrap()
                .is_master()
        );
        let mut nameless = pem.info().unwrap();
        nameless.common_names.clear();
        assert_eq!(User::from_certificate(&nameless), None);
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        let e = Tokens::none().parse_file("a,b,c\nonly-a-token\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = Tokens::none().parse_file("a,b,c,\"g1\n").unwrap_err();
        assert!(e.to_string().contains("line 1: unterminated quote"), "{e}");
        let e = Tokens::none().parse_file("a,b,c\na,d,e\n").unwrap_err();
        assert!(e.reason.contains("twice"), "{e}");
        let e = Tokens::none().parse_file(",b,c\n").unwrap_err();
        assert!(e.reason.contains("must not be empty"), "{e}");
    }
}
