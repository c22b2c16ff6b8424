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

#[cfg(test)]
mod tests {
    use super::*;

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
