//! In-process verification of git commit signatures (OpenPGP and SSH) against the public keys
//! a repository lists under `roles/keys/`. This module owns key-file parsing ([`Keyring`]) and
//! the classification of one detached signature into exactly one [`Status`]; deciding whether
//! the signer held a role at the time is the caller's job.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use sequoia_openpgp as openpgp;

use openpgp::cert::prelude::*;
use openpgp::packet::Signature;
use openpgp::parse::Parse;
use openpgp::policy::{HashAlgoSecurity, Policy, StandardPolicy};
use openpgp::types::{RevocationStatus, SignatureType};
use openpgp::{Cert, KeyHandle, KeyID, Packet, PacketPile};
use ssh_key::{HashAlg, PublicKey, SshSig};

/// The one OpenPGP policy used for every check (sequoia's defaults: SHA-1 and other broken
/// algorithms rejected). `StandardPolicy::new` is `const`, so this costs nothing per call.
static POLICY: StandardPolicy<'static> = StandardPolicy::new();

/// The only SSH signature namespace git uses for commits and tags.
/// The sshsig namespace of git commit signatures.
pub const GIT_NAMESPACE: &str = "git";

/// Which kind of key made (or would have made) a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    OpenPgp,
    Ssh,
}

/// The outcome of verifying one signature. Exactly one applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Cryptographically good, by a keyring key that was alive and not revoked when it signed.
    Valid,
    /// Made by a known key but does not verify (tampered data, wrong namespace), or malformed.
    Bad,
    /// No key in the keyring matches the signature's issuer.
    UnknownKey,
    /// The key (primary or signing subkey) had expired when the signature was made.
    ExpiredKey,
    /// The certificate or signing subkey is revoked (hard: always; soft: after the revocation).
    RevokedKey,
    /// A signature format this module does not verify (e.g. X.509/gpgsm).
    Unsupported,
}

/// Why a key file could not be added to a [`Keyring`]. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{label}: key file is empty")]
    Empty { label: String },
    #[error("{label}: could not be read: {reason}")]
    Unreadable { label: String, reason: String },
    #[error(
        "{label}: contains a private key; list only public keys (and treat this key as compromised)"
    )]
    PrivateKey { label: String },
    #[error(
        "{label}: contains a guarded revocation certificate (a line starting with \":-----BEGIN\"); \
         remove the leading ':' to apply the revocation"
    )]
    GuardedRevocation { label: String },
    #[error("{label}: neither an OpenPGP certificate nor OpenSSH public keys")]
    UnknownFormat { label: String },
    #[error("{label}: invalid OpenPGP data: {reason}")]
    OpenPgp { label: String, reason: String },
    #[error("{label}: line {line}: not an OpenSSH public key: {reason}")]
    Ssh {
        label: String,
        line: usize,
        reason: String,
    },
    #[error(
        "{label}: key {fingerprint} is already listed for person `{other_owner}` in {other_label}; \
         a key belongs to one person"
    )]
    Duplicate {
        label: String,
        fingerprint: String,
        other_owner: String,
        other_label: String,
    },
}

/// One OpenPGP certificate and the person it belongs to.
struct PgpEntry {
    owner: String,
    label: String,
    cert: Cert,
}

/// One OpenSSH public key and the person it belongs to.
struct SshEntry {
    owner: String,
    label: String,
    key: PublicKey,
    /// An ed25519 key, decompressed once: ssh-key decompresses the curve point again on every
    /// verification (measured: a tenth of the time of verifying a signed ledger).
    ed25519: Option<ed25519_dalek::VerifyingKey>,
}

impl SshEntry {
    fn new(owner: &str, label: &str, key: PublicKey) -> SshEntry {
        let ed25519 = match key.key_data() {
            ssh_key::public::KeyData::Ed25519(k) => ed25519_dalek::VerifyingKey::try_from(k).ok(),
            _ => None,
        };
        SshEntry {
            owner: owner.into(),
            label: label.into(),
            key,
            ed25519,
        }
    }

    /// What `PublicKey::verify` checks (key, namespace, then the signature over the sshsig
    /// signed data), with the decompressed key where there is one.
    fn verify(
        &self,
        namespace: &str,
        payload: &[u8],
        sig: &SshSig,
        memo: Option<&Memo>,
    ) -> Result<(), String> {
        let (Some(vk), ssh_key::Algorithm::Ed25519) = (&self.ed25519, sig.signature().algorithm())
        else {
            return self
                .key
                .verify(namespace, payload, sig)
                .map_err(|e| e.to_string());
        };
        if self.key.key_data() != sig.public_key() || sig.namespace() != namespace {
            return Err("the key or namespace differs".into());
        }
        let data =
            SshSig::signed_data(namespace, sig.hash_alg(), payload).map_err(|e| e.to_string())?;
        let signature = ed25519_dalek::Signature::from_slice(sig.signature_bytes())
            .map_err(|e| e.to_string())?;
        let memo_key = memo.map(|_| Memo::key(vk, &data, &signature));
        if let (Some(memo), Some(key)) = (memo, &memo_key)
            && memo.knows(key)
        {
            return Ok(());
        }
        use ed25519_dalek::Verifier;
        vk.verify(&data, &signature).map_err(|e| e.to_string())?;
        if let (Some(memo), Some(key)) = (memo, memo_key) {
            memo.learn(key);
        }
        Ok(())
    }
}

/// The ed25519 signatures this machine has already found good, so that `status` and
/// `evidence verify` do not redo the curve arithmetic for every record of a ledger on every
/// run (it is half of their time over 100,000 signed records).
///
/// It remembers the outcome of a pure function: the entry is the SHA-256 of the public key,
/// the exact signed data (namespace, hash algorithm and digest of the payload) and the
/// signature, and only a signature that verified is entered. Which key belongs to whom, and
/// whether that person could sign then, is judged afresh every time. The file lies in
/// `.git/sopkit-cache/` like the history cache, sealed with its own digest; a torn or edited
/// file is ignored, and a fresh clone starts without one.
pub struct Memo {
    file: std::path::PathBuf,
    known: std::collections::HashSet<[u8; 32]>,
    /// Entries looked up or learned in this run: what the file keeps when saved.
    used: std::sync::Mutex<Vec<[u8; 32]>>,
    learned: std::sync::atomic::AtomicBool,
    /// Whether this run wrote the file already (a judge may verify a ledger twice).
    saved: std::sync::atomic::AtomicBool,
}

impl Memo {
    /// Names the semantics remembered (cofactorless ed25519, as OpenSSH verifies): a change
    /// there needs a new name.
    const MAGIC: &str = "sopkit-ed25519-memo 1";

    /// The memo kept at `file`, empty when there is none or it is not intact.
    pub fn load(file: std::path::PathBuf) -> Memo {
        let known = std::fs::read(&file)
            .ok()
            .and_then(|bytes| {
                let body = crate::digest::unseal(Self::MAGIC, &bytes)?;
                let entries = body.chunks_exact(32);
                entries.remainder().is_empty().then(|| {
                    entries
                        .filter_map(|c| <[u8; 32]>::try_from(c).ok())
                        .collect()
                })
            })
            .unwrap_or_default();
        Memo {
            file,
            known,
            used: Default::default(),
            learned: Default::default(),
            saved: Default::default(),
        }
    }

    fn key(
        vk: &ed25519_dalek::VerifyingKey,
        data: &[u8],
        signature: &ed25519_dalek::Signature,
    ) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(Self::MAGIC.as_bytes());
        h.update(vk.as_bytes());
        h.update(signature.to_bytes());
        h.update(data);
        h.finalize().into()
    }

    fn knows(&self, key: &[u8; 32]) -> bool {
        let known = self.known.contains(key);
        if known {
            self.used
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(*key);
        }
        known
    }

    fn learn(&self, key: [u8; 32]) {
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(key);
        self.learned
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Writes the entries of this run back, when they differ from the file's (entries no
    /// longer looked up are dropped). Never fails a command: a memo not written is rebuilt.
    pub fn save(&self) {
        let file = &self.file;
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.sort_unstable();
        used.dedup();
        let learned = self
            .learned
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        let saved_before = self.saved.swap(true, std::sync::atomic::Ordering::Relaxed);
        if !learned && (saved_before || used.len() == self.known.len()) {
            return;
        }
        if let Some(dir) = file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let body = used.concat();
        let _ = crate::fs_atomic::write_unsynced(file, &crate::digest::seal(Self::MAGIC, &body));
    }
}

/// Parsed public keys, each owned by a person id. Parse once, share across threads (Send + Sync).
#[derive(Default)]
pub struct Keyring {
    pgp: Vec<PgpEntry>,
    /// Key id of every primary key and subkey → indexes into `pgp`. Fingerprint issuers are
    /// looked up by their key id; the exact match is then done by sequoia (`key_handles`).
    pgp_index: HashMap<KeyID, Vec<usize>>,
    /// `SHA256:...` fingerprint → key.
    ssh: HashMap<String, SshEntry>,
    /// Stand-alone revocation signatures whose certificate has not been added yet; applied
    /// when it is, so the order in which key files are added does not matter.
    pending_revocations: Vec<Signature>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("openpgp_certs", &self.pgp.len())
            .field("ssh_keys", &self.ssh.len())
            .field("pending_revocations", &self.pending_revocations.len())
            .finish()
    }
}

/// The result of verifying one signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    pub status: Status,
    /// None when the signature could not even be parsed.
    pub kind: Option<KeyKind>,
    /// Person id owning the key that matched.
    pub owner: Option<String>,
    /// OpenPGP: upper-case hex fingerprint of the signing key's certificate (primary key);
    /// SSH: `SHA256:...` as `ssh-keygen -l` prints it.
    pub fingerprint: Option<String>,
    /// OpenPGP signature creation time, unix seconds; SSH: None.
    pub signed_at: Option<i64>,
    /// OpenPGP: hex fingerprint of the key that made the signature (the primary key or a
    /// subkey); SSH: None.
    pub signing_key: Option<String>,
    /// One human sentence: who signed, or why it failed.
    pub detail: String,
}

impl Verification {
    fn unparsed(status: Status, detail: String) -> Verification {
        Verification {
            status,
            kind: None,
            owner: None,
            fingerprint: None,
            signed_at: None,
            signing_key: None,
            detail,
        }
    }
}

impl Keyring {
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// Whether the OpenPGP certificate with primary fingerprint `fingerprint` (hex, as in a
    /// [`Verification`]), and its key `signing_key` when given, were live, unrevoked and
    /// validly bound at `at` (Unix seconds). A signature is judged at its own creation time,
    /// which the signer's clock sets; this asks the same of a later moment, such as when the
    /// signed content was committed.
    pub fn pgp_cert_valid_at(
        &self,
        fingerprint: &str,
        signing_key: Option<&str>,
        at: i64,
    ) -> Result<(), (Status, String)> {
        let Some(entry) = self
            .pgp
            .iter()
            .find(|e| e.cert.fingerprint().to_hex() == fingerprint)
        else {
            return Ok(());
        };
        // The key that signed (a subkey has a life of its own), else the primary key.
        let Some(ka) = entry
            .cert
            .keys()
            .find(|ka| signing_key.is_none_or(|k| ka.key().fingerprint().to_hex() == k))
        else {
            return Ok(());
        };
        let when = UNIX_EPOCH + std::time::Duration::from_secs(at.max(0) as u64);
        live_at(&ka, when).map(|_| ())
    }

    /// Number of keys: OpenPGP certificates plus SSH public keys.
    pub fn len(&self) -> usize {
        self.pgp.len() + self.ssh.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any key belongs to person `owner`.
    pub fn has_owner(&self, owner: &str) -> bool {
        self.pgp.iter().any(|e| e.owner == owner) || self.ssh.values().any(|e| e.owner == owner)
    }

    /// Adds every key in one key file: an OpenPGP certificate (armored or binary; a file may
    /// hold several certs; revocation signatures included in the file are honoured) or an
    /// OpenSSH public key (one or more `ssh-ed25519 AAAA... comment` / `ssh-rsa ...` lines).
    /// `label` is the file's repository path, used in errors. Errors for unparseable files,
    /// private key material and empty files. On error the keyring is unchanged.
    ///
    /// A revocation certificate may also sit in a file of its own; it applies to its
    /// certificate whichever of the two files is added first. The same certificate listed
    /// twice for one person is merged; a key listed for two people is an error.
    pub fn add_file(&mut self, owner: &str, label: &str, bytes: &[u8]) -> Result<(), KeyError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(KeyError::Empty {
                label: label.into(),
            });
        }
        let text = std::str::from_utf8(bytes).ok();
        if let Some(text) = text {
            for line in text.lines().map(str::trim) {
                if line.starts_with("-----BEGIN ") && line.contains("PRIVATE KEY") {
                    return Err(KeyError::PrivateKey {
                        label: label.into(),
                    });
                }
                if line.starts_with(":-----BEGIN PGP") {
                    return Err(KeyError::GuardedRevocation {
                        label: label.into(),
                    });
                }
            }
        }
        match text {
            Some(text) if !text.contains("-----BEGIN PGP") => {
                let first = text
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty() && !l.starts_with('#'))
                    .unwrap_or_default();
                if looks_like_ssh_key(first) {
                    self.add_ssh(owner, label, text)
                } else if first.starts_with("-----BEGIN ") || !could_be_binary_openpgp(bytes) {
                    Err(KeyError::UnknownFormat {
                        label: label.into(),
                    })
                } else {
                    self.add_openpgp(owner, label, bytes, None)
                }
            }
            Some(text) => self.add_openpgp(owner, label, bytes, Some(text)),
            None if could_be_binary_openpgp(bytes) => self.add_openpgp(owner, label, bytes, None),
            None => Err(KeyError::UnknownFormat {
                label: label.into(),
            }),
        }
    }

    fn add_ssh(&mut self, owner: &str, label: &str, text: &str) -> Result<(), KeyError> {
        let mut keys: Vec<(String, PublicKey)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = PublicKey::from_openssh(line).map_err(|e| KeyError::Ssh {
                label: label.into(),
                line: n + 1,
                reason: e.to_string(),
            })?;
            let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
            if let Some(other) = self.ssh.get(&fingerprint)
                && other.owner != owner
            {
                return Err(KeyError::Duplicate {
                    label: label.into(),
                    fingerprint,
                    other_owner: other.owner.clone(),
                    other_label: other.label.clone(),
                });
            }
            keys.push((fingerprint, key));
        }
        if keys.is_empty() {
            return Err(KeyError::Empty {
                label: label.into(),
            });
        }
        for (fingerprint, key) in keys {
            self.ssh
                .entry(fingerprint)
                .or_insert_with(|| SshEntry::new(owner, label, key));
        }
        Ok(())
    }

    // Each way a certificate can fail to load is its own message for the person fixing the
    // key file; they share the parsed certificate.
    fn add_openpgp(
        &mut self,
        owner: &str,
        label: &str,
        bytes: &[u8],
        armored: Option<&str>,
    ) -> Result<(), KeyError> {
        let err = |reason: String| KeyError::OpenPgp {
            label: label.into(),
            reason,
        };
        // Each armored block (or the whole binary file) is parsed on its own, so that a
        // revocation certificate appended as its own block is recognised as one wherever it
        // sits, instead of relying on where sequoia would attach a misplaced signature.
        let blocks: Vec<&[u8]> = match armored {
            Some(text) => armor_blocks(text),
            None => vec![bytes],
        };
        let mut cert_packets: Vec<Packet> = Vec::new();
        let mut loose: Vec<Signature> = Vec::new();
        for block in blocks {
            let pile = PacketPile::from_bytes(block).map_err(|e| err(brief(e)))?;
            let packets: Vec<Packet> = pile
                .into_children()
                .filter(|p| !matches!(p, Packet::Marker(_)))
                .collect();
            if packets
                .iter()
                .any(|p| matches!(p, Packet::SecretKey(_) | Packet::SecretSubkey(_)))
            {
                return Err(KeyError::PrivateKey {
                    label: label.into(),
                });
            }
            if matches!(packets.first(), Some(Packet::Signature(_))) {
                for p in packets {
                    match p {
                        Packet::Signature(sig)
                            if matches!(
                                sig.typ(),
                                SignatureType::KeyRevocation | SignatureType::SubkeyRevocation
                            ) =>
                        {
                            loose.push(sig)
                        }
                        Packet::Signature(sig) => {
                            return Err(err(format!(
                                "contains a stand-alone {} signature; only certificates and \
                                 revocation certificates belong in a key file",
                                sig.typ()
                            )));
                        }
                        other => {
                            return Err(err(format!(
                                "unexpected {} packet in a revocation certificate",
                                other.tag()
                            )));
                        }
                    }
                }
            } else {
                cert_packets.extend(packets);
            }
        }

        let mut certs: Vec<Cert> = Vec::new();
        for cert in openpgp::cert::CertParser::from(cert_packets) {
            let cert = cert.map_err(|e| err(brief(e)))?;
            if cert.is_tsk() {
                return Err(KeyError::PrivateKey {
                    label: label.into(),
                });
            }
            certs.push(cert);
        }
        if certs.is_empty() && loose.is_empty() {
            return Err(err("no certificate found".into()));
        }

        // Check ownership before changing anything, so an error leaves the keyring unchanged.
        for cert in &certs {
            if let Some(i) = self.find_cert(&cert.fingerprint())
                && self.pgp[i].owner != owner
            {
                return Err(KeyError::Duplicate {
                    label: label.into(),
                    fingerprint: cert.fingerprint().to_hex(),
                    other_owner: self.pgp[i].owner.clone(),
                    other_label: self.pgp[i].label.clone(),
                });
            }
        }

        for cert in certs {
            // Looked up again (not taken from the check above): a file may repeat a cert.
            let index = match self.find_cert(&cert.fingerprint()) {
                Some(i) => {
                    self.pgp[i].cert =
                        self.pgp[i].cert.clone().merge_public(cert).map_err(|e| {
                            err(format!("cannot merge with {}: {e}", self.pgp[i].label))
                        })?;
                    i
                }
                None => {
                    let i = self.pgp.len();
                    self.pgp.push(PgpEntry {
                        owner: owner.into(),
                        label: label.into(),
                        cert,
                    });
                    i
                }
            };
            self.index_cert(index);
        }

        // Apply this file's revocations, then any that were waiting for a certificate.
        let mut pending = std::mem::take(&mut self.pending_revocations);
        pending.extend(loose);
        for sig in pending {
            if !self.apply_revocation(&sig) {
                self.pending_revocations.push(sig);
            }
        }
        Ok(())
    }

    fn find_cert(&self, fingerprint: &openpgp::Fingerprint) -> Option<usize> {
        self.pgp_index
            .get(&KeyID::from(fingerprint))?
            .iter()
            .copied()
            .find(|&i| self.pgp[i].cert.fingerprint() == *fingerprint)
    }

    fn index_cert(&mut self, index: usize) {
        for key in self.pgp[index].cert.keys() {
            let ids = self.pgp_index.entry(key.key().keyid()).or_default();
            if !ids.contains(&index) {
                ids.push(index);
            }
        }
    }

    /// Inserts a stand-alone revocation into the certificate it belongs to. Returns whether a
    /// certificate accepted it (sequoia verifies it against the primary key while canonicalizing).
    fn apply_revocation(&mut self, sig: &Signature) -> bool {
        let issuers = sig.get_issuers();
        for i in self.candidates(&issuers) {
            let cert = self.pgp[i].cert.clone();
            let Ok((updated, _)) = cert.insert_packets(std::iter::once(sig.clone())) else {
                continue;
            };
            let accepted = updated
                .primary_key()
                .self_revocations()
                .chain(updated.keys().subkeys().flat_map(|k| k.self_revocations()))
                .any(|s| s.normalized_eq(sig));
            if accepted {
                self.pgp[i].cert = updated;
                return true;
            }
        }
        false
    }

    /// The person owning the OpenPGP key (primary or subkey) with this hex fingerprint, and
    /// that certificate's primary fingerprint. Used when GnuPG checked the cryptography.
    pub fn openpgp_owner(&self, fingerprint_hex: &str) -> Option<(String, String)> {
        let fpr: openpgp::Fingerprint = fingerprint_hex.parse().ok()?;
        for i in self.candidates(&[KeyHandle::from(fpr.clone())]) {
            let e = &self.pgp[i];
            if e.cert.keys().any(|k| k.key().fingerprint() == fpr) {
                return Some((e.owner.clone(), e.cert.fingerprint().to_hex()));
            }
        }
        None
    }

    /// Indexes of certificates holding a key whose key id matches one of `issuers`.
    fn candidates(&self, issuers: &[KeyHandle]) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        for handle in issuers {
            if let Some(ids) = self.pgp_index.get(&KeyID::from(handle)) {
                for &i in ids {
                    if !out.contains(&i) {
                        out.push(i);
                    }
                }
            }
        }
        out
    }
}

/// Whether a line starts like an OpenSSH public key (`ssh-ed25519 AAAA...`).
fn looks_like_ssh_key(line: &str) -> bool {
    ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"]
        .iter()
        .any(|p| line.starts_with(p))
}

/// Whether the first byte could start a binary OpenPGP packet (the tag byte has bit 7 set).
fn could_be_binary_openpgp(bytes: &[u8]) -> bool {
    bytes.first().is_some_and(|b| b & 0x80 != 0)
}

/// Splits armored text into its `-----BEGIN PGP ...` ... `-----END PGP ...-----` blocks
/// (text around and between blocks is ignored, as gpg does).
fn armor_blocks(text: &str) -> Vec<&[u8]> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = find_line_start(rest, "-----BEGIN PGP") {
        let block = &rest[start..];
        let end = match block.find("-----END PGP") {
            Some(e) => {
                let after = &block[e..];
                // Up to the end of the END line ("-----END PGP ... BLOCK-----").
                e + after.find('\n').map_or(after.len(), |n| n + 1)
            }
            None => block.len(),
        };
        blocks.push(&block.as_bytes()[..end]);
        rest = &block[end..];
    }
    blocks
}

/// Byte offset of the first line of `text` that starts (after leading blanks) with `needle`.
fn find_line_start(text: &str, needle: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with(needle) {
            return Some(offset + (line.len() - trimmed.len()));
        }
        offset += line.len();
    }
    None
}

/// Verifies a detached signature (ASCII-armored OpenPGP `-----BEGIN PGP SIGNATURE-----` or SSH
/// `-----BEGIN SSH SIGNATURE-----` with namespace "git") over `payload`.
pub fn verify(keyring: &Keyring, signature: &[u8], payload: &[u8]) -> Verification {
    verify_in(keyring, signature, payload, GIT_NAMESPACE)
}

/// [`verify`] for SSH signatures made in another namespace (OpenPGP has none).
pub fn verify_in(
    keyring: &Keyring,
    signature: &[u8],
    payload: &[u8],
    namespace: &str,
) -> Verification {
    verify_remembered(keyring, signature, payload, namespace, None)
}

/// [`verify_in`], taking ed25519 signatures already found good from `memo` and entering the
/// ones found good now.
pub fn verify_remembered(
    keyring: &Keyring,
    signature: &[u8],
    payload: &[u8],
    namespace: &str,
    memo: Option<&Memo>,
) -> Verification {
    // Sequoia and ssh-key are not expected to panic, but a panic on hostile input in a
    // dependency must not take a whole `check` down: it becomes a Bad signature.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        verify_inner(keyring, signature, payload, namespace, memo)
    }))
    .unwrap_or_else(|_| {
        Verification::unparsed(
            Status::Bad,
            "the signature could not be verified (the verifier failed on this input)".into(),
        )
    })
}

fn verify_inner(
    keyring: &Keyring,
    signature: &[u8],
    payload: &[u8],
    namespace: &str,
    memo: Option<&Memo>,
) -> Verification {
    let start = signature
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(signature.len());
    let head = &signature[start..];
    if head.starts_with(b"-----BEGIN SSH SIGNATURE-----") {
        verify_ssh(keyring, signature, payload, namespace, memo)
    } else if head.starts_with(b"-----BEGIN PGP SIGNATURE-----") || could_be_binary_openpgp(head) {
        verify_openpgp(keyring, signature, payload)
    } else if head.is_empty() {
        Verification::unparsed(Status::Bad, "the signature is empty".into())
    } else {
        let what = if head.starts_with(b"-----BEGIN SIGNED MESSAGE-----") {
            "an X.509 (gpgsm) signature".to_string()
        } else if head.starts_with(b"-----BEGIN ") {
            let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
            format!("a `{}` block", brief(String::from_utf8_lossy(line).trim()))
        } else {
            "in an unknown format".to_string()
        };
        Verification::unparsed(
            Status::Unsupported,
            format!("the signature is {what}; only OpenPGP and SSH signatures are supported"),
        )
    }
}

fn verify_ssh(
    keyring: &Keyring,
    signature: &[u8],
    payload: &[u8],
    namespace: &str,
    memo: Option<&Memo>,
) -> Verification {
    let sig = match SshSig::from_pem(signature.trim_ascii()) {
        Ok(sig) => sig,
        Err(e) => {
            return Verification::unparsed(
                Status::Bad,
                format!("malformed SSH signature: {}", brief(e)),
            );
        }
    };
    let fingerprint = sig.public_key().fingerprint(HashAlg::Sha256).to_string();
    let result = |status, owner: Option<&str>, detail: String| Verification {
        status,
        kind: Some(KeyKind::Ssh),
        owner: owner.map(str::to_string),
        fingerprint: Some(fingerprint.clone()),
        signed_at: None,
        signing_key: None,
        detail,
    };
    let Some(entry) = keyring
        .ssh
        .get(&fingerprint)
        .filter(|e| e.key.key_data() == sig.public_key())
    else {
        return result(
            Status::UnknownKey,
            None,
            format!("signed by SSH key {fingerprint}, which no one in the repository holds"),
        );
    };
    let owner = Some(entry.owner.as_str());
    if sig.namespace() != namespace {
        return result(
            Status::Bad,
            owner,
            format!(
                "SSH signature by {} is for namespace `{}`, not `{namespace}`",
                entry.owner,
                sig.namespace()
            ),
        );
    }
    use ssh_key::public::KeyData;
    if !matches!(
        sig.public_key(),
        KeyData::Ed25519(_) | KeyData::SkEd25519(_) | KeyData::Rsa(_)
    ) {
        return result(
            Status::Unsupported,
            owner,
            format!(
                "SSH signature by {} uses {}, which this build cannot verify (only ed25519 and RSA)",
                entry.owner,
                sig.public_key().algorithm()
            ),
        );
    }
    match entry.verify(namespace, payload, &sig, memo) {
        Ok(()) => result(
            Status::Valid,
            owner,
            format!(
                "good SSH signature by {} with key {fingerprint}",
                entry.owner
            ),
        ),
        Err(e) => result(
            Status::Bad,
            owner,
            format!(
                "SSH signature by {} does not verify ({e}): the data or the signature was changed",
                entry.owner
            ),
        ),
    }
}

fn verify_openpgp(keyring: &Keyring, signature: &[u8], payload: &[u8]) -> Verification {
    let pile = match PacketPile::from_bytes(signature) {
        Ok(pile) => pile,
        Err(e) => {
            return Verification::unparsed(
                Status::Bad,
                format!("malformed OpenPGP signature: {}", brief(e)),
            );
        }
    };
    let mut sigs: Vec<Signature> = Vec::new();
    let mut unknown: Option<(bool, String)> = None;
    for packet in pile.into_children() {
        match packet {
            Packet::Signature(sig) => sigs.push(sig),
            Packet::Marker(_) => {}
            Packet::Unknown(u) => {
                let unsupported = matches!(
                    u.error().downcast_ref::<openpgp::Error>(),
                    Some(
                        openpgp::Error::UnsupportedPacketType(_)
                            | openpgp::Error::UnsupportedHashAlgorithm(_)
                            | openpgp::Error::UnsupportedPublicKeyAlgorithm(_)
                            | openpgp::Error::UnsupportedEllipticCurve(_)
                            | openpgp::Error::UnsupportedSignatureType(_)
                    )
                );
                unknown.get_or_insert((unsupported, brief(u.error())));
            }
            other => {
                return Verification::unparsed(
                    Status::Bad,
                    format!(
                        "not a detached OpenPGP signature: it contains a {} packet",
                        other.tag()
                    ),
                );
            }
        }
    }
    if sigs.is_empty() {
        return match unknown {
            Some((true, why)) => Verification::unparsed(
                Status::Unsupported,
                format!("unsupported OpenPGP signature: {why}"),
            ),
            Some((false, why)) => {
                Verification::unparsed(Status::Bad, format!("malformed OpenPGP signature: {why}"))
            }
            None => {
                Verification::unparsed(Status::Bad, "the OpenPGP data holds no signature".into())
            }
        };
    }
    // Several signatures over the same data are unusual for git; the first valid one wins,
    // otherwise the first signature's outcome is reported.
    let mut results: Vec<Verification> = sigs
        .iter()
        .map(|sig| verify_pgp_sig(keyring, sig, payload))
        .collect();
    let pick = results
        .iter()
        .position(|v| v.status == Status::Valid)
        .unwrap_or(0);
    results.swap_remove(pick)
}

fn verify_pgp_sig(keyring: &Keyring, sig: &Signature, payload: &[u8]) -> Verification {
    let Some(created) = sig.signature_creation_time() else {
        return Verification {
            kind: Some(KeyKind::OpenPgp),
            ..Verification::unparsed(
                Status::Bad,
                "malformed OpenPGP signature: it has no creation time".into(),
            )
        };
    };
    let signed_at = unix_seconds(created);
    let when = format_time(signed_at);
    let base = Verification {
        status: Status::Bad,
        kind: Some(KeyKind::OpenPgp),
        owner: None,
        fingerprint: None,
        signed_at: Some(signed_at),
        signing_key: None,
        detail: String::new(),
    };
    let issuers = sig.get_issuers();
    if issuers.is_empty() {
        return Verification {
            status: Status::UnknownKey,
            detail: "the OpenPGP signature names no issuer key".into(),
            ..base
        };
    }
    let payload: Cow<'_, [u8]> = if sig.typ() == SignatureType::Text {
        Cow::Owned(normalize_line_endings(payload))
    } else {
        Cow::Borrowed(payload)
    };

    let mut outcome: Option<Verification> = None;
    for i in keyring.candidates(&issuers) {
        let entry = &keyring.pgp[i];
        for ka in entry.cert.keys().key_handles(issuers.iter()) {
            let key_fpr = ka.key().fingerprint().to_hex();
            let found = |status, detail: String| Verification {
                status,
                owner: Some(entry.owner.clone()),
                fingerprint: Some(entry.cert.fingerprint().to_hex()),
                signing_key: Some(key_fpr.clone()),
                detail,
                ..base.clone()
            };
            let checked = match unsupported_algorithm(sig) {
                Some(why) => Err((Status::Unsupported, why)),
                None => check_pgp_key(sig, &ka, &payload, created),
            };
            let v = match checked {
                Ok(()) => found(
                    Status::Valid,
                    format!(
                        "good signature by {} with OpenPGP key {key_fpr}, made {when}",
                        entry.owner
                    ),
                ),
                Err((status, why)) => found(
                    status,
                    format!(
                        "signature by {} with OpenPGP key {key_fpr}, made {when}: {why}",
                        entry.owner
                    ),
                ),
            };
            if v.status == Status::Valid {
                return v;
            }
            // A key that the signature verified against says more than one that did not.
            if outcome.as_ref().is_none_or(|o| o.status == Status::Bad) {
                outcome = Some(v);
            }
        }
    }
    outcome.unwrap_or_else(|| {
        let names: Vec<String> = issuers.iter().map(|h| h.to_hex()).collect();
        Verification {
            status: Status::UnknownKey,
            detail: format!(
                "signed at {when} by OpenPGP key {}, which no one in the repository holds",
                names.join(" / ")
            ),
            ..base
        }
    })
}

/// A known algorithm this build cannot verify (an unassigned or private algorithm id is
/// treated as a malformed signature instead, which the crypto check then reports as Bad).
fn unsupported_algorithm(sig: &Signature) -> Option<String> {
    use openpgp::types::{HashAlgorithm, PublicKeyAlgorithm};
    let hash = sig.hash_algo();
    if !hash.is_supported()
        && !matches!(hash, HashAlgorithm::Unknown(_) | HashAlgorithm::Private(_))
    {
        return Some(format!(
            "hash algorithm {hash} is not supported by this build"
        ));
    }
    let pk = sig.pk_algo();
    if !pk.is_supported()
        && !matches!(
            pk,
            PublicKeyAlgorithm::Unknown(_) | PublicKeyAlgorithm::Private(_)
        )
    {
        return Some(format!(
            "public-key algorithm {pk} is not supported by this build"
        ));
    }
    None
}

/// Whether key `ka` (primary or subkey) and its certificate were validly bound, unrevoked
/// and live at `when`: revoked is said before expired, the certificate before the key.
fn live_at<'a>(
    ka: &ErasedKeyAmalgamation<'a, openpgp::packet::key::PublicParts>,
    when: SystemTime,
) -> Result<ValidErasedKeyAmalgamation<'a, openpgp::packet::key::PublicParts>, (Status, String)> {
    let vka = ka.clone().with_policy(&POLICY, when).map_err(|e| {
        (
            Status::Bad,
            format!("the key was not validly bound at that time ({})", brief(e)),
        )
    })?;
    if let RevocationStatus::Revoked(revs) = vka.valid_cert().revocation_status() {
        return Err((
            Status::RevokedKey,
            format!("the certificate is revoked ({})", revocation_reason(&revs)),
        ));
    }
    if let RevocationStatus::Revoked(revs) = vka.revocation_status() {
        return Err((
            Status::RevokedKey,
            format!("the signing key is revoked ({})", revocation_reason(&revs)),
        ));
    }
    if let Err(e) = vka.valid_cert().alive() {
        return Err((
            Status::ExpiredKey,
            format!("the certificate had expired ({e})"),
        ));
    }
    if let Err(e) = vka.alive() {
        return Err((
            Status::ExpiredKey,
            format!("the signing key had expired ({e:#})"),
        ));
    }
    Ok(vka)
}

/// The checks for one candidate key, in the documented order: crypto, revoked, expired, then
/// the signing capability. Validity is evaluated at the signature's creation time.
fn check_pgp_key(
    sig: &Signature,
    ka: &ErasedKeyAmalgamation<'_, openpgp::packet::key::PublicParts>,
    payload: &[u8],
    created: SystemTime,
) -> Result<(), (Status, String)> {
    sig.verify_message(ka.key(), payload)
        .map_err(|e| (Status::Bad, format!("it does not verify ({})", brief(e))))?;
    POLICY
        .signature(sig, HashAlgoSecurity::CollisionResistance)
        .map_err(|e| (Status::Bad, format!("rejected by policy ({})", brief(e))))?;
    let vka = live_at(ka, created)?;
    if !vka.for_signing() {
        return Err((Status::Bad, "the key is not signing-capable".into()));
    }
    Ok(())
}

fn revocation_reason(revs: &[&Signature]) -> String {
    let Some(rev) = revs.first() else {
        return "no reason given".into();
    };
    let when = rev
        .signature_creation_time()
        .map(|t| format!(" on {}", format_time(unix_seconds(t))))
        .unwrap_or_default();
    match rev.reason_for_revocation() {
        Some((code, message)) if !message.is_empty() => {
            format!("{code}: {}{when}", String::from_utf8_lossy(message).trim())
        }
        Some((code, _)) => format!("{code}{when}"),
        None => format!("no reason given{when}"),
    }
}

/// OpenPGP text signatures hash the data with every line ending (`\r\n`, `\n` or a lone `\r`)
/// normalized to `\r\n`. Sequoia does this only inside its streaming verifier (the hashing
/// mode is crate-private), so it is repeated here for `Signature::verify_message`.
fn normalize_line_endings(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// An error as one short clause: sequoia's messages sometimes embed a whole packet's Debug
/// output, which does not belong in a one-sentence detail.
fn brief(e: impl std::fmt::Display) -> String {
    const MAX: usize = 160;
    let text = format!("{e:#}");
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= MAX {
        return text;
    }
    let cut: String = text.chars().take(MAX).collect();
    format!("{cut}…")
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

use crate::time::rfc3339 as format_time;

#[cfg(test)]
mod tests {
    //! Every test uses real keys made at test time by GnuPG and ssh-keygen in temporary
    //! directories; no key material is committed.

    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output, Stdio};
    use tempfile::TempDir;

    const PAYLOAD: &[u8] = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@example.com> 1700000000 +0000\n\napprove IT-245\n";

    /// Fails the test, with a clear message, when a required tool is missing.
    fn require(tool: &str) {
        let ok = Command::new(tool)
            .arg(if tool == "ssh-keygen" {
                "-?"
            } else {
                "--version"
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(
            ok,
            "`{tool}` is required by the signature tests but was not found on PATH \
             (install gnupg / openssh-client / git)"
        );
    }

    fn check(out: Output, what: &str) -> Output {
        assert!(
            out.status.success(),
            "{what} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A throw-away GnuPG home; its agent is stopped on drop.
    struct Gpg {
        home: TempDir,
    }

    impl Gpg {
        fn new() -> Gpg {
            require("gpg");
            let home = tempfile::Builder::new()
                .prefix("sopkit-gpg")
                .tempdir()
                .unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700))
                    .unwrap();
            }
            Gpg { home }
        }

        fn path(&self) -> &Path {
            self.home.path()
        }

        fn cmd(&self, faked: Option<&str>) -> Command {
            let mut c = Command::new("gpg");
            c.env("GNUPGHOME", self.path())
                .args(["--batch", "--no-tty", "--pinentry-mode", "loopback"])
                .args(["--passphrase", ""]);
            if let Some(t) = faked {
                c.args(["--faked-system-time", t]);
            }
            c
        }

        fn run(&self, faked: Option<&str>, args: &[&str]) -> Vec<u8> {
            let out = self.cmd(faked).args(args).output().unwrap();
            check(out, &format!("gpg {args:?}")).stdout
        }

        /// Generates a key and returns its fingerprint.
        fn gen_key(
            &self,
            uid: &str,
            algo: &str,
            usage: &str,
            expire: &str,
            faked: Option<&str>,
        ) -> String {
            self.run(faked, &["--quick-gen-key", uid, algo, usage, expire]);
            self.fingerprint(uid)
        }

        fn fingerprint(&self, uid: &str) -> String {
            let out = self.run(None, &["--with-colons", "--list-keys", uid]);
            String::from_utf8(out)
                .unwrap()
                .lines()
                .find_map(|l| {
                    l.strip_prefix("fpr:")
                        .map(|r| r.trim_matches(':').to_string())
                })
                .expect("gpg printed no fingerprint")
        }

        fn export(&self, fpr: &str) -> Vec<u8> {
            self.run(None, &["--armor", "--export", fpr])
        }

        fn sign_with(
            &self,
            fpr: &str,
            payload: &[u8],
            faked: Option<&str>,
            extra: &[&str],
        ) -> Vec<u8> {
            let file = self.path().join(format!("payload-{}", rand_suffix()));
            std::fs::write(&file, payload).unwrap();
            let file = file.to_str().unwrap();
            let mut args = vec!["--armor", "--local-user", fpr, "--output", "-"];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["--detach-sign", file]);
            self.run(faked, &args)
        }

        fn sign(&self, fpr: &str, payload: &[u8], faked: Option<&str>) -> Vec<u8> {
            self.sign_with(fpr, payload, faked, &[])
        }

        /// The revocation certificate gpg made at key generation (hard: "no reason
        /// specified"), with its leading ':' guard removed.
        fn auto_revocation(&self, fpr: &str) -> Vec<u8> {
            let path = self
                .path()
                .join("openpgp-revocs.d")
                .join(format!("{fpr}.rev"));
            let text = std::fs::read_to_string(path).unwrap();
            text.replace(
                ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
                "-----BEGIN PGP PUBLIC KEY BLOCK-----",
            )
            .into_bytes()
        }

        /// A revocation certificate with the given reason code (0 none, 1 compromised,
        /// 2 superseded, 3 retired), made at `faked` time.
        fn revocation(&self, fpr: &str, reason: &str, faked: &str) -> Vec<u8> {
            let out_file = self.path().join(format!("rev-{}.asc", rand_suffix()));
            // --gen-revoke refuses --batch; answers go through --command-fd.
            let mut child = Command::new("gpg")
                .env("GNUPGHOME", self.path())
                .args([
                    "--no-tty",
                    "--pinentry-mode",
                    "loopback",
                    "--passphrase",
                    "",
                ])
                .args([
                    "--faked-system-time",
                    faked,
                    "--command-fd",
                    "0",
                    "--status-fd",
                    "2",
                ])
                .args([
                    "--armor",
                    "--output",
                    out_file.to_str().unwrap(),
                    "--gen-revoke",
                    fpr,
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            {
                use std::io::Write;
                let mut stdin = child.stdin.take().unwrap();
                write!(stdin, "y\n{reason}\nrevoked by a test\n\ny\n").unwrap();
            }
            check(child.wait_with_output().unwrap(), "gpg --gen-revoke");
            std::fs::read(out_file).unwrap()
        }
    }

    impl Drop for Gpg {
        fn drop(&mut self) {
            let _ = Command::new("gpgconf")
                .env("GNUPGHOME", self.path())
                .args(["--kill", "all"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    fn rand_suffix() -> String {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        N.fetch_add(1, Ordering::Relaxed).to_string()
    }

    /// An SSH key pair made by ssh-keygen in a temporary directory.
    struct Ssh {
        dir: TempDir,
        key: PathBuf,
    }

    impl Ssh {
        fn new(kind: &str) -> Ssh {
            require("ssh-keygen");
            let dir = tempfile::tempdir().unwrap();
            let key = dir.path().join("key");
            let mut args = vec!["-q", "-t", kind, "-N", "", "-C", "tester@example.com", "-f"];
            args.push(key.to_str().unwrap());
            if kind == "rsa" {
                args.extend_from_slice(&["-b", "3072"]);
            }
            check(
                Command::new("ssh-keygen").args(&args).output().unwrap(),
                "ssh-keygen",
            );
            Ssh { dir, key }
        }

        fn public(&self) -> Vec<u8> {
            std::fs::read(self.key.with_extension("pub")).unwrap()
        }

        fn sign(&self, namespace: &str, payload: &[u8]) -> Vec<u8> {
            let file = self.dir.path().join(format!("payload-{}", rand_suffix()));
            std::fs::write(&file, payload).unwrap();
            let out = Command::new("ssh-keygen")
                .args(["-Y", "sign", "-n", namespace, "-f"])
                .arg(&self.key)
                .arg(&file)
                .output()
                .unwrap();
            check(out, "ssh-keygen -Y sign");
            std::fs::read(file.with_extension("sig")).unwrap()
        }

        /// The fingerprint as `ssh-keygen -l` prints it.
        fn fingerprint(&self) -> String {
            let out = Command::new("ssh-keygen")
                .arg("-l")
                .arg("-f")
                .arg(self.key.with_extension("pub"))
                .output()
                .unwrap();
            let out = check(out, "ssh-keygen -l").stdout;
            String::from_utf8(out)
                .unwrap()
                .split_whitespace()
                .nth(1)
                .unwrap()
                .to_string()
        }
    }

    fn keyring(owner: &str, bytes: &[u8]) -> Keyring {
        let mut k = Keyring::new();
        k.add_file(owner, "roles/keys/test.asc", bytes).unwrap();
        k
    }

    fn tampered(payload: &[u8]) -> Vec<u8> {
        let mut p = payload.to_vec();
        p.extend_from_slice(b"extra line\n");
        p
    }

    #[test]
    fn keyring_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Keyring>();
        assert_send_sync::<Verification>();
    }

    #[test]
    fn openpgp_ed25519_good_bad_unknown() {
        let gpg = Gpg::new();
        let fpr = gpg.gen_key("Alice <alice@example.com>", "ed25519", "sign", "0", None);
        let other = gpg.gen_key("Bob <bob@example.com>", "ed25519", "sign", "0", None);
        let ring = keyring("alice", &gpg.export(&fpr));
        assert_eq!(ring.len(), 1);
        let sig = gpg.sign(&fpr, PAYLOAD, None);

        let v = verify(&ring, &sig, PAYLOAD);
        assert_eq!(v.status, Status::Valid, "{v:?}");
        assert_eq!(v.kind, Some(KeyKind::OpenPgp));
        assert_eq!(v.owner.as_deref(), Some("alice"));
        assert_eq!(v.fingerprint.as_deref(), Some(fpr.as_str()));
        let now = unix_seconds(SystemTime::now());
        let at = v.signed_at.unwrap();
        assert!(
            (now - 600..=now + 5).contains(&at),
            "signed_at {at} not near {now}"
        );
        assert!(v.detail.contains("good signature by alice"), "{}", v.detail);

        let v = verify(&ring, &sig, &tampered(PAYLOAD));
        assert_eq!(v.status, Status::Bad, "{v:?}");
        assert_eq!(v.owner.as_deref(), Some("alice"));

        let v = verify(&ring, &gpg.sign(&other, PAYLOAD, None), PAYLOAD);
        assert_eq!(v.status, Status::UnknownKey, "{v:?}");
        assert_eq!(v.owner, None);
        assert!(
            v.detail.contains(&other[other.len() - 16..]),
            "{}",
            v.detail
        );
    }

    #[test]
    fn openpgp_rsa_good_and_tampered() {
        let gpg = Gpg::new();
        let fpr = gpg.gen_key("Rsa <rsa@example.com>", "rsa3072", "sign", "0", None);
        let ring = keyring("rsa-person", &gpg.export(&fpr));
        let sig = gpg.sign(&fpr, PAYLOAD, None);
        let v = verify(&ring, &sig, PAYLOAD);
        assert_eq!(v.status, Status::Valid, "{v:?}");
        assert_eq!(v.fingerprint.as_deref(), Some(fpr.as_str()));
        assert_eq!(verify(&ring, &sig, &tampered(PAYLOAD)).status, Status::Bad);
    }

    #[test]
    fn openpgp_signing_subkey_reports_primary_fingerprint() {
        let gpg = Gpg::new();
        let fpr = gpg.gen_key("Sub <sub@example.com>", "ed25519", "cert", "0", None);
        gpg.run(None, &["--quick-add-key", &fpr, "ed25519", "sign", "0"]);
        let ring = keyring("sub", &gpg.export(&fpr));
        // Signing with the primary's fingerprint makes gpg pick the signing subkey.
        let sig = gpg.sign(&fpr, PAYLOAD, None);
        let v = verify(&ring, &sig, PAYLOAD);
        assert_eq!(v.status, Status::Valid, "{v:?}");
        assert_eq!(v.fingerprint.as_deref(), Some(fpr.as_str()));
        assert!(
            !v.detail.contains(&fpr),
            "detail names the subkey: {}",
            v.detail
        );
    }

    #[test]
    fn openpgp_text_mode_signature_is_normalized() {
        let gpg = Gpg::new();
        let fpr = gpg.gen_key("Text <text@example.com>", "ed25519", "sign", "0", None);
        let ring = keyring("text", &gpg.export(&fpr));
        let sig = gpg.sign_with(&fpr, PAYLOAD, None, &["--textmode"]);
        assert_eq!(verify(&ring, &sig, PAYLOAD).status, Status::Valid);
        assert_eq!(verify(&ring, &sig, &tampered(PAYLOAD)).status, Status::Bad);
    }

    #[test]
    fn openpgp_expiry_is_judged_at_signature_time() {
        let gpg = Gpg::new();
        // gpg refuses to sign with an expired key, so: make the key without expiry on
        // 2020-01-01, sign on 01-01 12:00 and on 01-05, then (faked at 01-01 06:00, i.e.
        // before both signatures) give it an expiry of one day. The newer self-signature
        // governs both signatures: the first is inside the validity, the second after it.
        let fpr = gpg.gen_key(
            "Exp <exp@example.com>",
            "ed25519",
            "sign",
            "0",
            Some("20200101T000000"),
        );
        let early = gpg.sign(&fpr, PAYLOAD, Some("20200101T120000"));
        let late = gpg.sign(&fpr, PAYLOAD, Some("20200105T000000"));
        gpg.run(Some("20200101T060000"), &["--quick-set-expire", &fpr, "1d"]);
        let ring = keyring("exp", &gpg.export(&fpr));

        let v = verify(&ring, &early, PAYLOAD);
        assert_eq!(v.status, Status::Valid, "{v:?}");
        assert_eq!(v.signed_at, Some(1_577_880_000));
        let v = verify(&ring, &late, PAYLOAD);
        assert_eq!(v.status, Status::ExpiredKey, "{v:?}");
        assert_eq!(v.owner.as_deref(), Some("exp"));
        // Crypto comes before expiry: a tampered payload is Bad even for the expired case.
        assert_eq!(verify(&ring, &late, &tampered(PAYLOAD)).status, Status::Bad);
    }

    #[test]
    fn openpgp_hard_revocation_revokes_every_signature() {
        let gpg = Gpg::new();
        let fpr = gpg.gen_key(
            "Rev <rev@example.com>",
            "ed25519",
            "sign",
            "0",
            Some("20200101T000000"),
        );
        let old = gpg.sign(&fpr, PAYLOAD, Some("20200102T000000"));
        let cert = gpg.export(&fpr);
        assert_eq!(
            verify(&keyring("rev", &cert), &old, PAYLOAD).status,
            Status::Valid
        );

        // Appending the auto-generated ("no reason specified" = hard) revocation to the key
        // file revokes the previously valid signature too.
        let mut file = cert.clone();
        file.extend_from_slice(&gpg.auto_revocation(&fpr));
        let ring = keyring("rev", &file);
        let v = verify(&ring, &old, PAYLOAD);
        assert_eq!(v.status, Status::RevokedKey, "{v:?}");
        assert!(v.detail.contains("revoked"), "{}", v.detail);
        // Crypto before revocation.
        assert_eq!(verify(&ring, &old, &tampered(PAYLOAD)).status, Status::Bad);

        // Revocation first in the file works as well.
        let mut file = gpg.auto_revocation(&fpr);
        file.extend_from_slice(&cert);
        assert_eq!(
            verify(&keyring("rev", &file), &old, PAYLOAD).status,
            Status::RevokedKey
        );

        // A compromised-key revocation made later is hard as well.
        let mut file = cert.clone();
        file.extend_from_slice(&gpg.revocation(&fpr, "1", "20200110T000000"));
        assert_eq!(
            verify(&keyring("rev", &file), &old, PAYLOAD).status,
            Status::RevokedKey
        );
    }

    #[test]
    fn openpgp_soft_revocation_only_affects_later_signatures() {
        let gpg = Gpg::new();
        let fpr = gpg.gen_key(
            "Soft <soft@example.com>",
            "ed25519",
            "sign",
            "0",
            Some("20200101T000000"),
        );
        let before = gpg.sign(&fpr, PAYLOAD, Some("20200102T000000"));
        let after = gpg.sign(&fpr, PAYLOAD, Some("20200105T000000"));
        let mut file = gpg.export(&fpr);
        // 3 = key is no longer used (retired), made on 2020-01-03.
        file.extend_from_slice(&gpg.revocation(&fpr, "3", "20200103T000000"));
        let ring = keyring("soft", &file);
        let v = verify(&ring, &before, PAYLOAD);
        assert_eq!(v.status, Status::Valid, "{v:?}");
        let v = verify(&ring, &after, PAYLOAD);
        assert_eq!(v.status, Status::RevokedKey, "{v:?}");
        assert!(v.detail.contains("revoked by a test"), "{}", v.detail);
    }

    #[test]
    fn openpgp_revocation_in_another_file_applies_in_any_order() {
        let gpg = Gpg::new();
        let fpr = gpg.gen_key("Order <order@example.com>", "ed25519", "sign", "0", None);
        let sig = gpg.sign(&fpr, PAYLOAD, None);
        let cert = gpg.export(&fpr);
        let rev = gpg.auto_revocation(&fpr);

        let mut ring = Keyring::new();
        ring.add_file("order", "roles/keys/order-rev.asc", &rev)
            .unwrap();
        assert!(ring.is_empty());
        ring.add_file("order", "roles/keys/order.asc", &cert)
            .unwrap();
        assert_eq!(verify(&ring, &sig, PAYLOAD).status, Status::RevokedKey);

        let mut ring = Keyring::new();
        ring.add_file("order", "roles/keys/order.asc", &cert)
            .unwrap();
        assert_eq!(verify(&ring, &sig, PAYLOAD).status, Status::Valid);
        ring.add_file("order", "roles/keys/order-rev.asc", &rev)
            .unwrap();
        assert_eq!(verify(&ring, &sig, PAYLOAD).status, Status::RevokedKey);
        assert_eq!(ring.len(), 1);
    }

    #[test]
    fn openpgp_key_file_errors() {
        let gpg = Gpg::new();
        let fpr = gpg.gen_key("Priv <priv@example.com>", "ed25519", "sign", "0", None);
        let mut ring = Keyring::new();

        let secret = gpg.run(None, &["--armor", "--export-secret-keys", &fpr]);
        let e = ring.add_file("p", "roles/keys/p.asc", &secret).unwrap_err();
        assert!(matches!(e, KeyError::PrivateKey { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("roles/keys/p.asc: contains a private key"),
            "{e}"
        );
        // Binary secret keys are refused as well (by packet, not by text marker).
        let secret = gpg.run(None, &["--export-secret-keys", &fpr]);
        let e = ring.add_file("p", "roles/keys/p.gpg", &secret).unwrap_err();
        assert!(matches!(e, KeyError::PrivateKey { .. }), "{e}");

        let e = ring
            .add_file("p", "roles/keys/empty.asc", b" \n\n")
            .unwrap_err();
        assert!(matches!(e, KeyError::Empty { .. }), "{e}");
        assert!(e.to_string().contains("roles/keys/empty.asc"), "{e}");

        let e = ring
            .add_file("p", "roles/keys/x.txt", b"hello world\n")
            .unwrap_err();
        assert!(matches!(e, KeyError::UnknownFormat { .. }), "{e}");

        let bad = b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64 at all!!\n-----END PGP PUBLIC KEY BLOCK-----\n";
        let e = ring.add_file("p", "roles/keys/bad.asc", bad).unwrap_err();
        assert!(matches!(e, KeyError::OpenPgp { .. }), "{e}");

        // The guarded revocation gpg writes must not be silently ignored.
        let guarded = std::fs::read(
            gpg.path()
                .join("openpgp-revocs.d")
                .join(format!("{fpr}.rev")),
        )
        .unwrap();
        let mut file = gpg.export(&fpr);
        file.extend_from_slice(&guarded);
        let e = ring.add_file("p", "roles/keys/g.asc", &file).unwrap_err();
        assert!(matches!(e, KeyError::GuardedRevocation { .. }), "{e}");

        // A detached data signature is not a key.
        let sig = gpg.sign(&fpr, PAYLOAD, None);
        let e = ring.add_file("p", "roles/keys/sig.asc", &sig).unwrap_err();
        assert!(matches!(e, KeyError::OpenPgp { .. }), "{e}");

        assert!(ring.is_empty(), "failed files must not add keys");

        // The same certificate for two people is refused; twice for one person is merged.
        let cert = gpg.export(&fpr);
        ring.add_file("p", "roles/keys/p.asc", &cert).unwrap();
        ring.add_file("p", "roles/keys/p-copy.asc", &cert).unwrap();
        assert_eq!(ring.len(), 1);
        let e = ring.add_file("q", "roles/keys/q.asc", &cert).unwrap_err();
        assert!(matches!(e, KeyError::Duplicate { .. }), "{e}");
        assert!(e.to_string().contains("`p`"), "{e}");
    }

    #[test]
    fn openpgp_several_certs_in_one_file_and_binary() {
        let gpg = Gpg::new();
        let a = gpg.gen_key("A <a@example.com>", "ed25519", "sign", "0", None);
        let b = gpg.gen_key("B <b@example.com>", "ed25519", "sign", "0", None);
        let both = gpg.run(None, &["--armor", "--export", &a, &b]);
        let ring = keyring("ab", &both);
        assert_eq!(ring.len(), 2);
        assert_eq!(
            verify(&ring, &gpg.sign(&b, PAYLOAD, None), PAYLOAD).status,
            Status::Valid
        );

        let binary = gpg.run(None, &["--export", &a]);
        let ring = keyring("a", &binary);
        assert_eq!(
            verify(&ring, &gpg.sign(&a, PAYLOAD, None), PAYLOAD).status,
            Status::Valid
        );
    }

    #[test]
    fn garbage_signatures_never_panic() {
        let gpg = Gpg::new();
        let fpr = gpg.gen_key("G <g@example.com>", "ed25519", "sign", "0", None);
        let ring = keyring("g", &gpg.export(&fpr));
        let good = gpg.sign(&fpr, PAYLOAD, None);

        let mut inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"\n\n".to_vec(),
            b"hello".to_vec(),
            vec![0x80, 0x01, 0xff],
            vec![0xff; 64],
            b"-----BEGIN PGP SIGNATURE-----\n\n!!!!\n-----END PGP SIGNATURE-----\n".to_vec(),
            b"-----BEGIN PGP SIGNATURE-----\n".to_vec(),
            b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n".to_vec(),
            b"-----BEGIN SIGNED MESSAGE-----\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\n-----END SIGNED MESSAGE-----\n".to_vec(),
        ];
        for cut in [10, 40, 80, good.len() / 2, good.len() - 30] {
            inputs.push(good[..cut].to_vec());
        }
        for input in &inputs {
            let v = verify(&ring, input, PAYLOAD);
            assert_ne!(v.status, Status::Valid, "{input:?} -> {v:?}");
            assert!(!v.detail.is_empty());
        }
        // Changed characters in the base64 body: any outcome but a panic. (Some stay Valid,
        // legitimately: the unhashed subpacket area and the armor checksum are not signed.)
        for i in 31..good.len() - 30 {
            let mut g = good.clone();
            g[i] = if g[i] == b'A' { b'B' } else { b'A' };
            assert!(!verify(&ring, &g, PAYLOAD).detail.is_empty());
        }
        let v = verify(&ring, &inputs[8], PAYLOAD);
        assert_eq!(v.status, Status::Unsupported, "{v:?}");
        assert_eq!(v.kind, None);
        assert_eq!(verify(&ring, b"", PAYLOAD).status, Status::Bad);
        assert_eq!(verify(&ring, &inputs[5], PAYLOAD).status, Status::Bad);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics(
            prefix in proptest::sample::select(vec![
                "",
                "-----BEGIN PGP SIGNATURE-----\n\n",
                "-----BEGIN SSH SIGNATURE-----\n",
                "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n",
                "ssh-ed25519 ",
            ]),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        ) {
            let mut bytes = prefix.as_bytes().to_vec();
            bytes.extend_from_slice(&body);
            let mut ring = Keyring::new();
            let _ = ring.add_file("p", "roles/keys/fuzz", &bytes);
            let v = verify(&ring, &bytes, PAYLOAD);
            proptest::prop_assert_ne!(v.status, Status::Valid);
        }
    }

    #[test]
    fn ssh_ed25519_good_namespace_tampered_unknown() {
        let key = Ssh::new("ed25519");
        let ring = keyring("carol", &key.public());
        assert_eq!(ring.len(), 1);
        let sig = key.sign("git", PAYLOAD);

        let v = verify(&ring, &sig, PAYLOAD);
        assert_eq!(v.status, Status::Valid, "{v:?}");
        assert_eq!(v.kind, Some(KeyKind::Ssh));
        assert_eq!(v.owner.as_deref(), Some("carol"));
        assert_eq!(v.fingerprint, Some(key.fingerprint()));
        assert_eq!(v.signed_at, None);

        let v = verify(&ring, &key.sign("file", PAYLOAD), PAYLOAD);
        assert_eq!(v.status, Status::Bad, "{v:?}");
        assert!(v.detail.contains("namespace `file`"), "{}", v.detail);

        assert_eq!(verify(&ring, &sig, &tampered(PAYLOAD)).status, Status::Bad);

        let stranger = Ssh::new("ed25519");
        let v = verify(&ring, &stranger.sign("git", PAYLOAD), PAYLOAD);
        assert_eq!(v.status, Status::UnknownKey, "{v:?}");
        assert_eq!(v.fingerprint, Some(stranger.fingerprint()));
        assert_eq!(v.owner, None);
    }

    #[test]
    fn a_memo_remembers_only_good_signatures_and_only_for_what_they_signed() {
        let key = Ssh::new("ed25519");
        let ring = keyring("carol", &key.public());
        let sig = key.sign("sopkit-evidence", PAYLOAD);
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("sopkit-cache").join("signatures.bin");
        let check = |memo: &Memo, payload: &[u8]| {
            verify_remembered(&ring, &sig, payload, "sopkit-evidence", Some(memo)).status
        };

        let memo = Memo::load(file.clone());
        assert_eq!(check(&memo, &tampered(PAYLOAD)), Status::Bad);
        assert!(!memo.learned.load(std::sync::atomic::Ordering::Relaxed));
        assert_eq!(check(&memo, PAYLOAD), Status::Valid);
        memo.save();
        let saved = std::fs::read(&file).unwrap();
        let body = crate::digest::unseal(Memo::MAGIC, &saved).unwrap();
        assert_eq!(body.len(), 32, "one entry: the good signature only");

        // The next run takes the good signature from the memo (learns nothing new) and still
        // finds the same signature over other data bad.
        let memo = Memo::load(file.clone());
        assert_eq!(memo.known.len(), 1);
        assert_eq!(check(&memo, PAYLOAD), Status::Valid);
        assert!(!memo.learned.load(std::sync::atomic::Ordering::Relaxed));
        assert_eq!(check(&memo, &tampered(PAYLOAD)), Status::Bad);
        // A new good signature is added; saving twice in one run keeps both entries.
        let second = key.sign("sopkit-evidence", b"another record\n");
        assert_eq!(
            verify_remembered(
                &ring,
                &second,
                b"another record\n",
                "sopkit-evidence",
                Some(&memo)
            )
            .status,
            Status::Valid
        );
        memo.save();
        memo.save();
        assert_eq!(Memo::load(file.clone()).known.len(), 2);
        let saved = std::fs::read(&file).unwrap();
        let other = Ssh::new("ed25519");
        let forged = other.sign("sopkit-evidence", PAYLOAD);
        assert_eq!(
            verify_remembered(&ring, &forged, PAYLOAD, "sopkit-evidence", Some(&memo)).status,
            Status::UnknownKey
        );

        // A key the policy no longer lists (removed after a leak) signs nothing, whatever the
        // memo remembers of its signatures.
        let without = keyring("dave", &Ssh::new("ed25519").public());
        assert_eq!(
            verify_remembered(&without, &sig, PAYLOAD, "sopkit-evidence", Some(&memo)).status,
            Status::UnknownKey
        );

        // A memo edited on disk is not believed.
        let mut edited = saved.clone();
        *edited.last_mut().unwrap() ^= 1;
        std::fs::write(&file, edited).unwrap();
        assert!(Memo::load(file).known.is_empty());
    }

    #[test]
    fn ssh_rsa_and_multi_line_files() {
        let rsa = Ssh::new("rsa");
        let ed = Ssh::new("ed25519");
        let mut file = b"# carol's keys\n\n".to_vec();
        file.extend_from_slice(&rsa.public());
        file.extend_from_slice(&ed.public());
        let ring = keyring("carol", &file);
        assert_eq!(ring.len(), 2);
        let v = verify(&ring, &rsa.sign("git", PAYLOAD), PAYLOAD);
        assert_eq!(v.status, Status::Valid, "{v:?}");
        assert_eq!(v.fingerprint, Some(rsa.fingerprint()));
        assert_eq!(
            verify(&ring, &ed.sign("git", PAYLOAD), PAYLOAD).status,
            Status::Valid
        );
        assert_eq!(
            verify(&ring, &rsa.sign("git", PAYLOAD), &tampered(PAYLOAD)).status,
            Status::Bad
        );
    }

    #[test]
    fn ssh_key_file_errors() {
        let key = Ssh::new("ed25519");
        let mut ring = Keyring::new();
        let private = std::fs::read(&key.key).unwrap();
        let e = ring.add_file("c", "roles/keys/c", &private).unwrap_err();
        assert!(matches!(e, KeyError::PrivateKey { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("roles/keys/c: contains a private key"),
            "{e}"
        );

        let mut file = key.public();
        file.extend_from_slice(b"ssh-ed25519 AAAAnotbase64 x\n");
        let e = ring.add_file("c", "roles/keys/c.pub", &file).unwrap_err();
        assert!(matches!(e, KeyError::Ssh { line: 2, .. }), "{e}");
        assert!(
            e.to_string().starts_with("roles/keys/c.pub: line 2:"),
            "{e}"
        );
        assert!(ring.is_empty());

        ring.add_file("c", "roles/keys/c.pub", &key.public())
            .unwrap();
        let e = ring
            .add_file("d", "roles/keys/d.pub", &key.public())
            .unwrap_err();
        assert!(matches!(e, KeyError::Duplicate { .. }), "{e}");
    }

    #[test]
    fn parallel_verification_with_rayon() {
        use rayon::prelude::*;
        let key = Ssh::new("ed25519");
        let gpg = Gpg::new();
        let fpr = gpg.gen_key("Par <par@example.com>", "ed25519", "sign", "0", None);
        let mut ring = Keyring::new();
        ring.add_file("par", "roles/keys/par.pub", &key.public())
            .unwrap();
        ring.add_file("par", "roles/keys/par.asc", &gpg.export(&fpr))
            .unwrap();
        let sigs = [key.sign("git", PAYLOAD), gpg.sign(&fpr, PAYLOAD, None)];
        let ok = (0..400)
            .into_par_iter()
            .filter(|i| verify(&ring, &sigs[i % 2], PAYLOAD).status == Status::Valid)
            .count();
        assert_eq!(ok, 400);
    }

    #[test]
    fn status_serializes_kebab_case() {
        let v = Verification::unparsed(Status::UnknownKey, "x".into());
        let json = serde_json::to_string(&v).unwrap();
        assert!(json.contains("\"unknown-key\""), "{json}");
        assert_eq!(
            serde_json::to_string(&KeyKind::OpenPgp).unwrap(),
            "\"openpgp\""
        );
    }

    fn git(repo: &Path, env: &[(&str, &Path)], args: &[&str]) {
        let mut c = Command::new("git");
        c.current_dir(repo)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args([
                "-c",
                "user.name=Tester",
                "-c",
                "user.email=tester@example.com",
            ]);
        for (k, v) in env {
            c.env(k, v);
        }
        check(c.args(args).output().unwrap(), &format!("git {args:?}"));
    }

    fn head_signature(repo: &Path) -> (Vec<u8>, Vec<u8>) {
        let repo = git2::Repository::open(repo).unwrap();
        let oid = repo.head().unwrap().target().unwrap();
        let (sig, data) = repo.extract_signature(&oid, None).unwrap();
        (sig.to_vec(), data.to_vec())
    }

    #[test]
    fn git_commit_signed_with_gpg() {
        require("git");
        let gpg = Gpg::new();
        let fpr = gpg.gen_key("Git <git@example.com>", "ed25519", "sign", "0", None);
        let repo = tempfile::tempdir().unwrap();
        let env = [("GNUPGHOME", gpg.path())];
        git(repo.path(), &env, &["init", "-q"]);
        let key = format!("user.signingkey={fpr}");
        git(
            repo.path(),
            &env,
            &[
                "-c",
                "gpg.program=gpg",
                "-c",
                &key,
                "commit",
                "-q",
                "-S",
                "--allow-empty",
                "-m",
                "approve",
            ],
        );
        let (sig, data) = head_signature(repo.path());
        let ring = keyring("git-person", &gpg.export(&fpr));
        let v = verify(&ring, &sig, &data);
        assert_eq!(v.status, Status::Valid, "{v:?}");
        assert_eq!(v.owner.as_deref(), Some("git-person"));
        assert_eq!(verify(&ring, &sig, &tampered(&data)).status, Status::Bad);
    }

    #[test]
    fn git_commit_signed_with_ssh() {
        require("git");
        let key = Ssh::new("ed25519");
        let repo = tempfile::tempdir().unwrap();
        git(repo.path(), &[], &["init", "-q"]);
        let pubkey = key.key.with_extension("pub");
        let signing = format!("user.signingKey={}", pubkey.display());
        git(
            repo.path(),
            &[],
            &[
                "-c",
                "gpg.format=ssh",
                "-c",
                &signing,
                "commit",
                "-q",
                "-S",
                "--allow-empty",
                "-m",
                "approve",
            ],
        );
        let (sig, data) = head_signature(repo.path());
        assert!(sig.starts_with(b"-----BEGIN SSH SIGNATURE-----"));
        let ring = keyring("ssh-person", &key.public());
        let v = verify(&ring, &sig, &data);
        assert_eq!(v.status, Status::Valid, "{v:?}");
        assert_eq!(v.owner.as_deref(), Some("ssh-person"));
        assert_eq!(v.fingerprint, Some(key.fingerprint()));
    }
}
