//! Bootstrap tokens: how a new GPU box proves it may join (`ringrift join`), in kubeadm's
//! model and format. A token is `<id>.<secret>` (`[a-z0-9]{6}.[a-z0-9]{16}`), stored as a
//! Secret `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token` with
//! kubeadm's keys (`token-id`, `token-secret`, `expiration`, `description`,
//! `usage-bootstrap-authentication`), plus a usage limit and count of our own
//! (`usage-limit`, `usages`). Everything here is pure: parsing, checking, and the Secret to
//! store.

use std::collections::BTreeMap;

use base64::Engine as _;
use jiff::Timestamp;
use serde_json::{Value, json};

/// How long a joined agent's client certificate is valid, by default (`ringrift server
/// --agent-certificate-validity`); the agent renews it after two thirds of that.
pub const AGENT_CERT_VALIDITY: i64 = 365 * ringrift_tls::pki::DAY;

/// The namespace of bootstrap token Secrets.
pub const NAMESPACE: &str = "kube-system";
/// The Secret type of a bootstrap token.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The prefix of a bootstrap token Secret's name; the token id follows.
pub const NAME_PREFIX: &str = "bootstrap-token-";

/// The Secret (in [`NAMESPACE`]) whose `key` a joining agent is handed: the fleet's cluster key
/// (gossip and fetches between agents), when the server keeps one.
pub const CLUSTER_KEY_SECRET: &str = "ringrift-cluster-key";

const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;

/// A token as presented: its id and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The public half: names the Secret.
    pub id: String,
    /// The private half.
    pub secret: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}.<redacted>)", self.id)
    }
}

impl std::fmt::Display for Token {
    /// The whole token, secret included: what `ringrift join --token` takes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

fn token_chars(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl Token {
    /// Reads `<id>.<secret>`.
    ///
    /// # Errors
    /// A message saying the expected form.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (id, secret) = text.trim().split_once('.').unwrap_or(("", ""));
        if token_chars(id, ID_LEN) && token_chars(secret, SECRET_LEN) {
            Ok(Self {
                id: id.to_owned(),
                secret: secret.to_owned(),
            })
        } else {
            Err(
                "a bootstrap token is <id>.<secret>: 6 and 16 characters of a-z and 0-9, as \
                 `ringrift server token create` prints it"
                    .into(),
            )
        }
    }

    /// A new random token.
    pub fn generate() -> Self {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut bytes = uuid::Uuid::new_v4().into_bytes().to_vec();
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        // 36 symbols from 256 byte values: reject the top 4 values so each is equally likely.
        let mut chars = bytes
            .into_iter()
            .filter(|b| *b < 252)
            .map(|b| char::from(ALPHABET[usize::from(b % 36)]));
        let mut take = |n| chars.by_ref().take(n).collect::<String>();
        let (id, secret) = (take(ID_LEN), take(SECRET_LEN));
        if id.len() == ID_LEN && secret.len() == SECRET_LEN {
            Self { id, secret }
        } else {
            // 32 random bytes hold 22 accepted ones unless more than 10 were rejected.
            Self::generate()
        }
    }

    /// The name of its Secret.
    pub fn secret_name(&self) -> String {
        format!("{NAME_PREFIX}{}", self.id)
    }
}

/// A stored token, as its Secret says.
#[derive(Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its id.
    pub id: String,
    secret: String,
    /// When it stops working, if ever.
    pub expires: Option<Timestamp>,
    /// How many joins it allows, if limited.
    pub usage_limit: Option<u32>,
    /// Joins made with it.
    pub usages: u32,
    /// What it is for, for people.
    pub description: String,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("id", &self.id)
            .field("expires", &self.expires)
            .field("usage_limit", &self.usage_limit)
            .field("usages", &self.usages)
            .finish_non_exhaustive()
    }
}

/// Why a presented token does not let a box join.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No such token, or the secret does not match (the two are not told apart).
    #[error("the bootstrap token is not valid")]
    Unknown,
    /// Past its expiration.
    #[error("the bootstrap token {id} expired at {at}")]
    Expired {
        /// The token id.
        id: String,
        /// When.
        at: Timestamp,
    },
    /// Its usage limit is reached.
    #[error("the bootstrap token {id} is used up ({limit} joins allowed)")]
    UsedUp {
        /// The token id.
        id: String,
        /// Its limit.
        limit: u32,
    },
}

/// A field of the Secret's data: `Ok(None)` when absent, `Err` when present but not base64
/// text (a malformed field never reads as an absent one: a garbled expiration is no token,
/// not a token that never expires).
fn data_field(secret: &Value, key: &str) -> Result<Option<String>, ()> {
    let Some(encoded) = secret.get("data").and_then(|d| d.get(key)) else {
        return Ok(None);
    };
    let bytes = encoded
        .as_str()
        .and_then(|e| base64::engine::general_purpose::STANDARD.decode(e).ok())
        .ok_or(())?;
    String::from_utf8(bytes).map(Some).map_err(|_| ())
}

impl Stored {
    /// The token a Secret holds; none when the Secret is no usable bootstrap token (another
    /// type, a missing or malformed field, authentication usage not enabled).
    pub fn from_secret(secret: &Value) -> Option<Self> {
        let field = |key| data_field(secret, key).ok();
        if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE)
            || field("usage-bootstrap-authentication")?.as_deref() != Some("true")
        {
            return None;
        }
        let id = field("token-id")??;
        let secret_text = field("token-secret")??;
        if !token_chars(&id, ID_LEN) || !token_chars(&secret_text, SECRET_LEN) {
            return None;
        }
        let expires = match field("expiration")? {
            Some(t) => Some(t.parse().ok()?),
            None => None,
        };
        let number = |key| match field(key)? {
            Some(v) => v.parse::<u32>().ok().map(Some),
            None => Some(None),
        };
        Some(Self {
            id,
            secret: secret_text,
            expires,
            usage_limit: number("usage-limit")?,
            usages: number("usages")?.unwrap_or(0),
            description: field("description")?.unwrap_or_default(),
        })
    }

    /// Whether `presented` may join at `now`.
    ///
    /// # Errors
    /// The [`Refusal`].
    pub fn check(&self, presented: &Token, now: Timestamp) -> Result<(), Refusal> {
        if presented.id != self.id
            || !ringrift_tls::secret::same(presented.secret.as_bytes(), self.secret.as_bytes())
        {
            return Err(Refusal::Unknown);
        }
        if let Some(at) = self.expires.filter(|at| *at <= now) {
            return Err(Refusal::Expired {
                id: self.id.clone(),
                at,
            });
        }
        if let Some(limit) = self.usage_limit.filter(|limit| self.usages >= *limit) {
            return Err(Refusal::UsedUp {
                id: self.id.clone(),
                limit,
            });
        }
        Ok(())
    }
}

/// The Secret of a new token: valid until `expires` (if set), for `usage_limit` joins (if
/// set). `stringData`, as the API server takes it on create.
pub fn secret(
    token: &Token,
    expires: Option<Timestamp>,
    usage_limit: Option<u32>,
    description: &str,
) -> Value {
    let mut data = BTreeMap::from([
        ("token-id", token.id.clone()),
        ("token-secret", token.secret.clone()),
        ("usage-bootstrap-authentication", "true".to_owned()),
        ("usages", "0".to_owned()),
    ]);
    if let Some(at) = expires {
        data.insert("expiration", at.to_string());
    }
    if let Some(limit) = usage_limit {
        data.insert("usage-limit", limit.to_string());
    }
    if !description.is_empty() {
        data.insert("description", description.to_owned());
    }
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": SECRET_TYPE,
        "metadata": {"name": token.secret_name(), "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/managed-by": "ringrift-server"}},
        "stringData": data,
    })
}

/// `secret` (as stored) with one more use counted.
pub fn count_use(secret: &Value) -> Value {
    let mut out = secret.clone();
    let usages = Stored::from_secret(secret).map_or(0, |s| s.usages);
    let encoded = base64::engine::general_purpose::STANDARD.encode((usages + 1).to_string());
    if let Some(data) = out.get_mut("data").and_then(Value::as_object_mut) {
        data.insert("usages".into(), Value::String(encoded));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Secret as stored: `stringData` turned into base64 `data`.
    fn stored(v: &Value) -> Value {
        let mut out = v.clone();
        let data: serde_json::Map<String, Value> = v["stringData"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, s)| {
                let encoded = base64::engine::general_purpose::STANDARD.encode(s.as_str().unwrap());
                (k.clone(), Value::String(encoded))
            })
            .collect();
        let o = out.as_object_mut().unwrap();
        o.remove("stringData");
        o.insert("data".into(), Value::Object(data));
        out
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn tokens_read_as_kubeadm_writes_them() {
        let t = Token::parse("abcdef.0123456789abcdef").unwrap();
        assert_eq!(
            (t.id.as_str(), t.secret_name()),
            ("abcdef", "bootstrap-token-abcdef".into())
        );
        assert_eq!(t.to_string(), "abcdef.0123456789abcdef");
        assert!(
            !format!("{t:?}").contains("0123456789abcdef"),
            "debug output hides the secret"
        );
        for bad in [
            "",
            "abcdef",
            "abcdef.",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde!",
        ] {
            assert!(Token::parse(bad).unwrap_err().contains("<id>.<secret>"), "{bad}");
        }
        let a = Token::generate();
        assert_eq!(Token::parse(&a.to_string()).unwrap(), a);
        assert_ne!(Token::generate(), a);
    }

    #[test]
    fn a_stored_token_admits_its_secret_until_it_expires_or_is_used_up() {
        let token = Token::parse("abcdef.0123456789abcdef").unwrap();
        let secret = stored(&secret(
            &token,
            Some(at("2026-12-06T00:00:00Z")),
            Some(2),
            "gpu boxes",
        ));
        let s = Stored::from_secret(&secret).unwrap();
        assert_eq!(
            (s.usage_limit, s.usages, s.description.as_str()),
            (Some(2), 0, "gpu boxes")
        );
        let now = at("2026-12-05T12:00:00Z");
        assert_eq!(s.check(&token, now), Ok(()));
        let wrong = Token::parse("abcdef.0123456789abcdee").unwrap();
        assert_eq!(s.check(&wrong, now), Err(Refusal::Unknown));
        assert!(matches!(
            s.check(&token, at("2026-12-06T00:00:00Z")),
            Err(Refusal::Expired { .. })
        ));
        let once = count_use(&secret);
        let twice = count_use(&once);
        assert_eq!(Stored::from_secret(&once).unwrap().check(&token, now), Ok(()));
        let used_up = Stored::from_secret(&twice).unwrap();
        assert_eq!(used_up.usages, 2);
        assert_eq!(
            used_up.check(&token, now),
            Err(Refusal::UsedUp {
                id: "abcdef".into(),
                limit: 2
            })
        );
    }

    #[test]
    fn only_bootstrap_secrets_with_authentication_usage_are_tokens() {
        let token = Token::generate();
        let good = stored(&secret(&token, None, None, ""));
        assert!(
            Stored::from_secret(&good)
                .unwrap()
                .check(&token, Timestamp::now())
                .is_ok()
        );
        let mut opaque = good.clone();
        opaque["type"] = json!("Opaque");
        assert!(Stored::from_secret(&opaque).is_none());
        let mut no_auth = good.clone();
        no_auth["data"]["usage-bootstrap-authentication"] =
            json!(base64::engine::general_purpose::STANDARD.encode("false"));
        assert!(Stored::from_secret(&no_auth).is_none());
        for (key, value) in [("expiration", "not base64 !"), ("usage-limit", "bWFueQ==")] {
            let mut garbage = good.clone();
            garbage["data"][key] = json!(value);
            assert!(Stored::from_secret(&garbage).is_none(), "malformed {key}");
        }
    }
}
