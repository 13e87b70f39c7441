//! SCRAM credentials (RFC 5802, RFC 7677) of the embedded broker's users: what the broker
//! stores of a password, so it can check a client's proof without keeping the password.

use hmac::{Mac, SimpleHmac};
use sha2::{Digest, Sha256, Sha512, digest::core_api::BlockSizeUser};

/// Iterations of PBKDF2, Kafka's minimum (and its tools' default) for SCRAM.
pub const ITERATIONS: u32 = 4096;

/// A SCRAM hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

/// What the server stores of one user's password for one mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential {
    /// The salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

/// `(StoredKey, ServerKey)` of `password`.
fn derive<D: Digest + BlockSizeUser + Clone + Sync>(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> (Vec<u8>, Vec<u8>) {
    let mut salted = vec![0u8; <D as Digest>::output_size()];
    pbkdf2::pbkdf2::<SimpleHmac<D>>(password, salt, iterations, &mut salted).expect("HMAC takes a key of any length");
    let hmac = |key: &[u8], text: &[u8]| {
        let mut mac = <SimpleHmac<D> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(text);
        mac.finalize().into_bytes().to_vec()
    };
    let client_key = hmac(&salted, b"Client Key");
    (D::digest(&client_key).to_vec(), hmac(&salted, b"Server Key"))
}

impl StoredCredential {
    /// The credential of `password` with `salt` under `hash`.
    pub fn new(hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> StoredCredential {
        let (stored_key, server_key) = match hash {
            ScramHash::Sha256 => derive::<Sha256>(password.as_bytes(), salt, iterations),
            ScramHash::Sha512 => derive::<Sha512>(password.as_bytes(), salt, iterations),
        };
        StoredCredential { salt: salt.to_vec(), iterations, stored_key, server_key }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7677_example_credential() {
        // RFC 7677 §3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096
        // iterations; its ServerSignature v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4= is
        // HMAC(ServerKey, AuthMessage).
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let c = StoredCredential::new(ScramHash::Sha256, "pencil", &salt, 4096);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let mut mac = <SimpleHmac<Sha256> as Mac>::new_from_slice(&c.server_key).expect("key");
        mac.update(auth_message.as_bytes());
        assert_eq!(b64.encode(mac.finalize().into_bytes()), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert_eq!(StoredCredential::new(ScramHash::Sha512, "pencil", &salt, 4096).stored_key.len(), 64);
    }
}
