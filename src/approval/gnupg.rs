//! The GnuPG backend (cargo feature `gpgme`): the user's GnuPG checks the cryptography of
//! OpenPGP signatures (its keyring, smartcards and algorithms), and the repository's key files
//! still decide who the signer is: a key that people.yaml does not list is an unknown key,
//! whatever the keyring trusts. SSH signatures are always checked in-process. GnuPG judges
//! expiry and revocation as of now, not as of the signature (unlike the in-process backend).

use std::path::Path;
use std::time::UNIX_EPOCH;

use gpgme::SignatureSummary;

use super::signature::{self, KeyKind, Keyring, Status, Verification};

fn failed(status: Status, detail: String) -> Verification {
    Verification {
        status,
        kind: Some(KeyKind::OpenPgp),
        owner: None,
        fingerprint: None,
        signed_at: None,
        signing_key: None,
        detail,
    }
}

pub fn verify(home: Option<&Path>, keyring: &Keyring, sig: &[u8], payload: &[u8]) -> Verification {
    if !sig.starts_with(b"-----BEGIN PGP SIGNATURE-----") {
        return signature::verify(keyring, sig, payload);
    }
    let mut ctx = match gpgme::Context::from_protocol(gpgme::Protocol::OpenPgp) {
        Ok(c) => c,
        Err(e) => return failed(Status::Unsupported, format!("GnuPG is not available: {e}")),
    };
    if let Some(h) = home
        && let Err(e) = ctx.set_engine_home_dir(h.to_string_lossy().as_ref())
    {
        return failed(
            Status::Unsupported,
            format!("GnuPG home {}: {e}", h.display()),
        );
    }
    // verify_detached is Ok even for a bad signature: every signature's status is checked.
    let result = match ctx.verify_detached(sig, payload) {
        Ok(r) => r,
        Err(e) => return failed(Status::Bad, format!("GnuPG could not verify: {e}")),
    };
    let Some(s) = result.signatures().next() else {
        return failed(Status::Bad, "GnuPG found no signature".into());
    };
    let summary = s.summary();
    let fpr = s.fingerprint().ok().map(str::to_string);
    let signed_at = s
        .creation_time()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64);
    let mut status = if summary.contains(SignatureSummary::KEY_MISSING) {
        Status::UnknownKey
    } else if s.status().is_err()
        && !summary.intersects(SignatureSummary::KEY_REVOKED | SignatureSummary::KEY_EXPIRED)
    {
        Status::Bad
    } else if summary.contains(SignatureSummary::KEY_REVOKED) {
        Status::RevokedKey
    } else if summary.contains(SignatureSummary::KEY_EXPIRED) {
        Status::ExpiredKey
    } else if s.status().is_err() {
        Status::Bad
    } else {
        Status::Valid
    };
    let owner = fpr.as_deref().and_then(|f| keyring.openpgp_owner(f));
    if owner.is_none() && status != Status::Bad {
        status = Status::UnknownKey;
    }
    let detail = match (&status, &owner) {
        (Status::Valid, Some((o, _))) => format!("good signature (checked by GnuPG) by {o}"),
        (Status::UnknownKey, None) => format!(
            "key {} is not listed in people.yaml",
            fpr.as_deref().unwrap_or("?")
        ),
        _ => format!("GnuPG: {:?}", summary),
    };
    Verification {
        status,
        kind: Some(KeyKind::OpenPgp),
        signing_key: fpr.clone(),
        fingerprint: owner.as_ref().map(|(_, primary)| primary.clone()).or(fpr),
        owner: owner.map(|(o, _)| o),
        signed_at,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn gpg(home: &Path, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        use std::io::Write;
        let mut child = Command::new("gpg")
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .env("GNUPGHOME", home)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("gpg (gnupg) is needed for these tests");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.unwrap_or_default())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    #[test]
    fn gnupg_checks_the_crypto_and_the_repository_names_the_signer() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("gnupg");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        gpg(
            &home,
            &[
                "--quick-gen-key",
                "Ann <ann@example.com>",
                "ed25519",
                "sign",
                "0",
            ],
            None,
        );
        let cert = gpg(&home, &["--armor", "--export", "ann@example.com"], None);
        let payload = b"tree 0000\nauthor Ann\n\nApprove\n";
        let sig = gpg(
            &home,
            &["--armor", "--detach-sign", "-u", "ann@example.com"],
            Some(payload),
        );

        let mut keyring = Keyring::new();
        keyring
            .add_file("ann", "roles/keys/ann.asc", &cert)
            .unwrap();
        let v = verify(Some(&home), &keyring, &sig, payload);
        assert_eq!(v.status, Status::Valid, "{v:?}");
        assert_eq!(v.owner.as_deref(), Some("ann"));
        // The in-process backend agrees on signer and fingerprint.
        let w = signature::verify(&keyring, &sig, payload);
        assert_eq!(
            (w.status, w.owner.clone(), w.fingerprint.clone()),
            (Status::Valid, v.owner.clone(), v.fingerprint.clone())
        );

        assert_eq!(
            verify(Some(&home), &keyring, &sig, b"tampered").status,
            Status::Bad
        );
        // Known to GnuPG but not to the repository: unknown.
        assert_eq!(
            verify(Some(&home), &Keyring::new(), &sig, payload).status,
            Status::UnknownKey
        );
        // Unknown to GnuPG (an empty home): unknown.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        std::fs::set_permissions(&empty, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        assert_eq!(
            verify(Some(&empty), &keyring, &sig, payload).status,
            Status::UnknownKey
        );
        for h in [&home, &empty] {
            let _ = Command::new("gpgconf")
                .args(["--kill", "all"])
                .env("GNUPGHOME", h)
                .output();
        }
    }
}
