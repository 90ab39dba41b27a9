//! Who is asking. Users sign in with a password (HTTP Basic on the Handshake, the way the JDBC
//! driver and ADBC do it) against an argon2 or bcrypt hash and get a bearer token with an expiry
//! back in the `authorization` response header; services present a long-lived token whose SHA-256
//! is configured. Every other call must carry a valid bearer token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordHash;
use argon2::{Argon2, PasswordVerifier as _};
use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{
    GeneralPurpose, GeneralPurposeConfig, STANDARD, URL_SAFE_NO_PAD,
};
use sha2::{Digest as _, Sha256};
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::config::AuthConfig;

/// An authenticated caller, and the key of its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    /// The token the caller presented (or was given); its session is keyed by it.
    pub session_key: String,
}

/// How long a verified password is remembered, and for how many callers at most.
const VERIFIED_FOR: Duration = Duration::from_secs(60);
const MAX_VERIFIED: usize = 10_000;

#[derive(Debug)]
struct IssuedToken {
    user: String,
    expires: Instant,
}

/// Checks credentials and issues bearer tokens.
pub struct Authenticator {
    required: bool,
    ttl: Duration,
    users: HashMap<String, String>,
    /// SHA-256 of each service token → service name.
    services: HashMap<[u8; 32], String>,
    issued: Mutex<HashMap<String, IssuedToken>>,
    /// Passwords verified in the last [`VERIFIED_FOR`]: SHA-256 of user and password → user.
    /// HTTP clients (Trino's protocol) send the password with every request, and a password
    /// hash costs tens of milliseconds to check by design.
    verified: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    /// A hash no password matches, verified for unknown users so that a wrong name costs as
    /// long as a wrong password.
    decoy: String,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("required", &self.required)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("services", &self.services.values().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Self {
        let services = config
            .service_tokens
            .iter()
            .filter_map(|t| {
                let mut digest = [0u8; 32];
                for (i, byte) in digest.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(t.token_sha256.get(2 * i..2 * i + 2)?, 16).ok()?;
                }
                Some((digest, t.name.clone()))
            })
            .collect();
        Self {
            required: config.required,
            ttl: Duration::from_secs(config.token_ttl_secs),
            users: config
                .users
                .iter()
                .map(|u| (u.name.clone(), u.password_hash.clone()))
                .collect(),
            services,
            issued: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
            decoy: hash_password(&URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())),
        }
    }

    /// Whether callers must present credentials.
    pub fn required(&self) -> bool {
        self.required
    }

    /// Handshake: checks `authorization: Basic …` (or a bearer token, re-presented) and returns
    /// the principal plus the bearer token to send back.
    pub fn sign_in(&self, metadata: &MetadataMap) -> Result<(Principal, String), Status> {
        match authorization(metadata)? {
            Some(Credentials::Basic { user, password }) => self.password_sign_in(&user, &password),
            Some(Credentials::Bearer(token)) => {
                let principal = self.verify_token(&token)?;
                Ok((principal, token))
            }
            None if !self.required => Ok((anonymous(), String::new())),
            None => Err(Status::unauthenticated(
                "sign in with a user name and password (HTTP Basic on the Flight handshake) or \
                 present a service token as `authorization: Bearer <token>`",
            )),
        }
    }

    /// Checks a password and issues a bearer token for the session it starts (the Flight
    /// handshake, and the status page's sign-in form).
    pub fn password_sign_in(
        &self,
        user: &str,
        password: &str,
    ) -> Result<(Principal, String), Status> {
        self.verify_password(user, password)?;
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let mut issued = self.issued.lock().expect("tokens lock");
        let now = Instant::now();
        issued.retain(|_, t| t.expires > now);
        issued.insert(
            token.clone(),
            IssuedToken {
                user: user.to_owned(),
                expires: now + self.ttl,
            },
        );
        tracing::info!(user = %user, "signed in");
        Ok((
            Principal {
                name: user.to_owned(),
                session_key: token.clone(),
            },
            token,
        ))
    }

    /// Who presents `token` (a status-page session cookie); without one, the anonymous user
    /// when sign-in is not required.
    pub fn token_principal(&self, token: Option<&str>) -> Result<Principal, Status> {
        match token {
            Some(t) => self.verify_token(t),
            None if !self.required => Ok(anonymous()),
            None => Err(Status::unauthenticated("sign in first")),
        }
    }

    /// Every call but the Handshake: the caller must present a valid bearer token.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Principal, Status> {
        match authorization(metadata)? {
            Some(Credentials::Bearer(token)) => self.verify_token(&token),
            Some(Credentials::Basic { user, password }) => {
                self.verify_password_cached(&user, &password)?;
                Ok(Principal {
                    session_key: format!("basic:{user}"),
                    name: user,
                })
            }
            None if !self.required => Ok(anonymous()),
            None => Err(Status::unauthenticated(
                "this call needs `authorization: Bearer <token>`: sign in through the Flight \
                 handshake first, or use a service token",
            )),
        }
    }

    /// Ends an issued token (CloseSession); service tokens stay valid.
    pub fn revoke(&self, token: &str) {
        self.issued.lock().expect("tokens lock").remove(token);
    }

    /// [`Self::verify_password`], remembering a success for [`VERIFIED_FOR`].
    fn verify_password_cached(&self, user: &str, password: &str) -> Result<(), Status> {
        let mut hasher = Sha256::new();
        hasher.update(user.as_bytes());
        hasher.update([0]);
        hasher.update(password.as_bytes());
        let key: [u8; 32] = hasher.finalize().into();
        let now = Instant::now();
        if let Some((known, until)) = self.verified.lock().expect("verified lock").get(&key)
            && known == user
            && *until > now
        {
            return Ok(());
        }
        self.verify_password(user, password)?;
        let mut verified = self.verified.lock().expect("verified lock");
        verified.retain(|_, (_, until)| *until > now);
        if verified.len() < MAX_VERIFIED {
            verified.insert(key, (user.to_owned(), now + VERIFIED_FOR));
        }
        Ok(())
    }

    fn verify_password(&self, user: &str, password: &str) -> Result<(), Status> {
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.as_str(), true),
            None => (self.decoy.as_str(), false),
        };
        let ok = if hash.starts_with("$2") {
            bcrypt::verify(password, hash).unwrap_or(false)
        } else {
            PasswordHash::new(hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        };
        if ok && known {
            Ok(())
        } else {
            tracing::warn!(user, "sign-in refused");
            Err(Status::unauthenticated("wrong user name or password"))
        }
    }

    fn verify_token(&self, token: &str) -> Result<Principal, Status> {
        {
            let mut issued = self.issued.lock().expect("tokens lock");
            if let Some(t) = issued.get(token) {
                if t.expires > Instant::now() {
                    return Ok(Principal {
                        name: t.user.clone(),
                        session_key: token.to_owned(),
                    });
                }
                issued.remove(token);
                return Err(Status::unauthenticated(
                    "the bearer token has expired; sign in again",
                ));
            }
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        match self.services.get(&digest) {
            Some(name) => Ok(Principal {
                name: name.clone(),
                session_key: format!("service:{name}"),
            }),
            None => Err(Status::unauthenticated(
                "unknown bearer token; sign in again or check the service token",
            )),
        }
    }
}

fn anonymous() -> Principal {
    Principal {
        name: "anonymous".into(),
        session_key: "anonymous".into(),
    }
}

enum Credentials {
    Basic { user: String, password: String },
    Bearer(String),
}

/// Standard base64 with or without padding: the ADBC Flight SQL driver (Go) sends `user:password`
/// unpadded, the JDBC driver and pyarrow padded.
const BASIC_CREDENTIALS: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn authorization(metadata: &MetadataMap) -> Result<Option<Credentials>, Status> {
    let Some(value) = metadata.get("authorization") else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| Status::unauthenticated("the authorization header is not text"))?
        .trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Ok(Some(Credentials::Bearer(rest.trim().to_owned()))),
        "basic" => {
            let decoded = BASIC_CREDENTIALS
                .decode(rest.trim())
                .map_err(|e| {
                    Status::unauthenticated(format!(
                        "malformed Basic credentials: not base64 ({e})"
                    ))
                })
                .and_then(|b| {
                    String::from_utf8(b).map_err(|_| {
                        Status::unauthenticated("malformed Basic credentials: not UTF-8")
                    })
                })?;
            // RFC 7617: the user name cannot contain ':', the password can.
            let (user, password) = decoded.split_once(':').ok_or_else(|| {
                Status::unauthenticated("malformed Basic credentials: no ':' after the user name")
            })?;
            Ok(Some(Credentials::Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            }))
        }
        _ => Err(Status::unauthenticated(
            "unsupported authorization scheme; use Basic or Bearer",
        )),
    }
}

/// Parses `metadata`'s authorization header and checks what parsing promises (the fuzz
/// target's invariant): Basic credentials, encoded again, parse to the same user and password.
pub(crate) fn check_authorization_header(metadata: &MetadataMap) {
    let Ok(Some(Credentials::Basic { user, password })) = authorization(metadata) else {
        return;
    };
    assert!(!user.contains(':'), "a user name never holds ':'");
    let encoded = STANDARD.encode(format!("{user}:{password}"));
    let mut again = MetadataMap::new();
    again.insert(
        "authorization",
        format!("Basic {encoded}")
            .parse()
            .expect("base64 is a valid header value"),
    );
    match authorization(&again) {
        Ok(Some(Credentials::Basic {
            user: u,
            password: p,
        })) => assert!(
            u == user && p == password,
            "credentials change in a round trip"
        ),
        _ => panic!("credentials encoded again do not parse"),
    }
}

/// An argon2id PHC string for `password` (for `orderlake-server hash-password`).
pub fn hash_password(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16-byte salt encodes");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes any password")
        .to_string()
}

/// A new random service token and the SHA-256 hex the configuration stores.
pub fn new_service_token() -> (String, String) {
    let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let digest = Sha256::digest(token.as_bytes());
    let hex = digest.iter().map(|b| format!("{b:02x}")).collect();
    (token, hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ServiceTokenConfig, UserConfig};
    use base64::engine::general_purpose::STANDARD_NO_PAD;

    fn metadata(header: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", header.parse().unwrap());
        m
    }

    #[test]
    fn passwords_tokens_and_service_tokens() {
        let (service_token, service_sha) = new_service_token();
        let auth = Authenticator::new(&AuthConfig {
            required: true,
            token_ttl_secs: 60,
            users: vec![UserConfig {
                name: "bi".into(),
                password_hash: hash_password("s3cret"),
            }],
            service_tokens: vec![ServiceTokenConfig {
                name: "api".into(),
                token_sha256: service_sha,
            }],
        });
        let basic =
            |u: &str, p: &str| metadata(&format!("Basic {}", STANDARD.encode(format!("{u}:{p}"))));
        let (who, token) = auth.sign_in(&basic("bi", "s3cret")).unwrap();
        assert_eq!(who.name, "bi");
        assert_eq!(
            auth.authenticate(&metadata(&format!("Bearer {token}")))
                .unwrap()
                .name,
            "bi"
        );
        assert!(auth.sign_in(&basic("bi", "wrong")).is_err());
        assert!(auth.sign_in(&basic("nobody", "s3cret")).is_err());
        assert!(auth.authenticate(&MetadataMap::new()).is_err());
        assert!(auth.authenticate(&metadata("Bearer forged")).is_err());
        let svc = auth
            .authenticate(&metadata(&format!("Bearer {service_token}")))
            .unwrap();
        assert_eq!(svc.name, "api");
        auth.revoke(&token);
        assert!(
            auth.authenticate(&metadata(&format!("Bearer {token}")))
                .is_err()
        );
    }

    #[test]
    fn issued_tokens_expire() {
        let auth = Authenticator::new(&AuthConfig {
            required: true,
            token_ttl_secs: 0,
            users: vec![UserConfig {
                name: "bi".into(),
                password_hash: hash_password("pw"),
            }],
            service_tokens: vec![],
        });
        let basic = metadata(&format!("Basic {}", STANDARD.encode("bi:pw")));
        let (_, token) = auth.sign_in(&basic).unwrap();
        let err = auth
            .authenticate(&metadata(&format!("Bearer {token}")))
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.message().contains("expired"), "{}", err.message());
    }

    #[test]
    fn basic_credentials_padded_or_not_split_at_the_first_colon() {
        // Every length modulo 3, so unpadded encodings end in one, two or no missing '='.
        for (user, password) in [
            ("demo", "demo-pass-71"),
            ("demo", "demo-pass-7"),
            ("demo", "demo-pass-"),
            ("bi", "pa:ss word: with colons"),
            ("bi", "pässwörd ✓"),
            ("bi", ""),
        ] {
            let raw = format!("{user}:{password}");
            for encoded in [STANDARD.encode(&raw), STANDARD_NO_PAD.encode(&raw)] {
                let Some(Credentials::Basic {
                    user: u,
                    password: p,
                }) = authorization(&metadata(&format!("Basic {encoded}"))).unwrap()
                else {
                    panic!("{encoded} is Basic credentials");
                };
                assert_eq!((u.as_str(), p.as_str()), (user, password), "{encoded}");
            }
        }
        for (header, why) in [
            ("Basic !!!!", "not base64"),
            (
                &format!("Basic {}", STANDARD.encode([0xff, 0xfe, b':'])),
                "not UTF-8",
            ),
            (&format!("Basic {}", STANDARD.encode("no-colon")), "no ':'"),
        ] {
            let Err(err) = authorization(&metadata(header)) else {
                panic!("{header} is refused");
            };
            assert_eq!(err.code(), tonic::Code::Unauthenticated);
            assert!(err.message().contains(why), "{header}: {}", err.message());
        }
    }
}
