//! Who is calling the API: bearer tokens stored as their SHA-256, each with a role and a tenant
//! scope. Pure: the users file is parsed from text and a token is checked against the table.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// What a user may do; each role may do everything the roles before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Dashboards, alert queue, search and pivots: read only.
    Viewer,
    /// Also acknowledges, assigns and closes alerts.
    Analyst,
    /// Also escalates alerts.
    Responder,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Responder => "responder",
            Role::Admin => "admin",
        }
    }
}

/// Which organizations' rows a user sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The national centre: every organization.
    All,
    /// One provincial or ministry organization.
    Organization(String),
}

impl Scope {
    /// How the scope is written in the audit log.
    pub fn label(&self) -> &str {
        match self {
            Scope::All => "*",
            Scope::Organization(id) => id,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub scope: Scope,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    user: Vec<UserEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    role: Role,
    /// An organization id, or `*` for the national centre.
    tenant: String,
    token_sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("parsing users file: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("user {name:?}: {message}")]
    Invalid { name: String, message: String },
}

/// The users table: token hash -> principal.
#[derive(Debug, Default, Clone)]
pub struct Users {
    by_hash: HashMap<[u8; 32], Principal>,
}

impl Users {
    pub fn parse(text: &str) -> Result<Users, UsersError> {
        let file: UsersFile = toml::from_str(text)?;
        let mut users = Users::default();
        for entry in file.user {
            let invalid = |message: &str| UsersError::Invalid {
                name: entry.name.clone(),
                message: message.into(),
            };
            if entry.name.is_empty() {
                return Err(invalid("empty name"));
            }
            let Some(hash) = parse_hex32(&entry.token_sha256) else {
                return Err(invalid("token_sha256 must be 64 hex digits"));
            };
            let scope = match entry.tenant.as_str() {
                "" => return Err(invalid("empty tenant: use an organization id or \"*\"")),
                "*" => Scope::All,
                id => Scope::Organization(id.to_string()),
            };
            let principal = Principal { name: entry.name.clone(), role: entry.role, scope };
            if users.by_hash.insert(hash, principal).is_some() {
                return Err(invalid("token hash used by two users"));
            }
        }
        Ok(users)
    }

    /// The principal holding `token`, if any.
    pub fn authenticate(&self, token: &str) -> Option<&Principal> {
        if token.is_empty() {
            return None;
        }
        self.by_hash.get(&sha256(token))
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

pub fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// A new random token (32 bytes from the OS, hex) and its hash.
pub fn new_token() -> std::io::Result<(String, String)> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let token = hex(&bytes);
    let hash = hex(&sha256(&token));
    Ok((token, hash))
}

/// The token of an `Authorization: Bearer TOKEN` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Users {
        let text = format!(
            "[[user]]\nname = \"n\"\nrole = \"admin\"\ntenant = \"*\"\ntoken_sha256 = \"{}\"\n\
             [[user]]\nname = \"p\"\nrole = \"viewer\"\ntenant = \"org-a\"\ntoken_sha256 = \"{}\"\n",
            hex(&sha256("tok-n")),
            hex(&sha256("tok-p")),
        );
        Users::parse(&text).expect("valid users")
    }

    #[test]
    fn tokens_map_to_their_principals() {
        let users = users();
        assert_eq!(users.authenticate("tok-n").map(|p| &p.scope), Some(&Scope::All));
        let p = users.authenticate("tok-p").expect("known");
        assert_eq!((p.role, &p.scope), (Role::Viewer, &Scope::Organization("org-a".into())));
        assert!(users.authenticate("tok-x").is_none());
        assert!(users.authenticate("").is_none());
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Analyst && Role::Analyst < Role::Responder);
        assert!(Role::Responder < Role::Admin);
    }

    #[test]
    fn bad_users_files_are_refused() {
        let bad_hash =
            "[[user]]\nname = \"a\"\nrole = \"admin\"\ntenant = \"*\"\ntoken_sha256 = \"xyz\"";
        assert!(Users::parse(bad_hash).is_err());
        let bad_role = format!(
            "[[user]]\nname = \"a\"\nrole = \"root\"\ntenant = \"*\"\ntoken_sha256 = \"{}\"",
            hex(&sha256("t"))
        );
        assert!(Users::parse(&bad_role).is_err());
        let same = format!(
            "[[user]]\nname = \"a\"\nrole = \"admin\"\ntenant = \"*\"\ntoken_sha256 = \"{h}\"\n\
             [[user]]\nname = \"b\"\nrole = \"admin\"\ntenant = \"x\"\ntoken_sha256 = \"{h}\"",
            h = hex(&sha256("t"))
        );
        assert!(Users::parse(&same).is_err());
    }

    #[test]
    fn bearer_header_is_parsed() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn example_users_file_parses_and_its_tokens_work() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/users/example.toml");
        let text = std::fs::read_to_string(path).expect("example users file");
        let users = Users::parse(&text).expect("example users parse");
        assert_eq!(users.authenticate("example-national-token").map(|p| p.role), Some(Role::Admin));
        assert_eq!(
            users.authenticate("example-hanoi-token").map(|p| p.scope.clone()),
            Some(Scope::Organization("org-hanoi".into()))
        );
    }

    #[test]
    fn new_tokens_differ_and_hash_to_what_they_print() {
        let (a, ha) = new_token().expect("urandom");
        let (b, _) = new_token().expect("urandom");
        assert_ne!(a, b);
        assert_eq!(hex(&sha256(&a)), ha);
    }
}
