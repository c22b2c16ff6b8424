//! Hashing, for all of sopkit: SHA-256 of bytes and files, and the one lower-case hex form
//! in which every hash is printed and recorded. A foundation module: it imports nothing
//! from the rest of the crate.

use std::path::Path;

use sha2::{Digest, Sha256};

/// Lower-case hex of `bytes` (`hex::encode` goes through a char iterator, several times
/// slower on the ledger's hot path).
pub fn hex(bytes: &[u8]) -> String {
    let mut buf = vec![0u8; bytes.len() * 2];
    // The buffer is exactly twice the input, the only way this can fail.
    let _ = hex::encode_to_slice(bytes, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// SHA-256 of `bytes`, in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The size and SHA-256 of a file, hashed as it is read (constant memory).
pub fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut file, &mut h)?;
    Ok((n, hex(&h.finalize())))
}

/// `body` behind a first line `MAGIC <SHA-256 of body in hex>`: the form of sopkit's caches
/// under `.git/`, so that a torn or edited one is ignored rather than believed.
pub fn seal(magic: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{magic} {}\n", sha256_hex(body)).into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The body of sealed `bytes` (see [`seal`]), when the first line names `magic` and the
/// digest matches.
pub fn unseal<'a>(magic: &str, bytes: &'a [u8]) -> Option<&'a [u8]> {
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let (first, body) = (
        std::str::from_utf8(&bytes[..newline]).ok()?,
        &bytes[newline + 1..],
    );
    let digest = first.strip_prefix(magic)?.strip_prefix(' ')?;
    (digest == sha256_hex(body)).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_body_opens_only_whole_and_under_its_own_name() {
        let sealed = seal("sopkit-test 1", b"body\nwith lines");
        assert_eq!(
            unseal("sopkit-test 1", &sealed),
            Some(&b"body\nwith lines"[..])
        );
        assert_eq!(unseal("sopkit-test 2", &sealed), None);
        assert_eq!(unseal("sopkit-test 1", &sealed[..sealed.len() - 1]), None);
        let mut edited = sealed.clone();
        *edited.last_mut().unwrap() ^= 1;
        assert_eq!(unseal("sopkit-test 1", &edited), None);
        assert_eq!(unseal("sopkit-test 1", b"no newline"), None);
    }

    #[test]
    fn hex_is_the_lower_case_hex_of_every_byte() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(hex(&bytes), hex::encode(&bytes));
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_file_is_hashed_as_its_bytes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), (3, sha256_hex(b"abc")));
        assert!(sha256_file(&d.path().join("missing")).is_err());
    }
}
