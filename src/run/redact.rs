//! Removing secret values from a stream of output as it passes, so that a secret split
//! across two reads is still caught.

use aho_corasick::AhoCorasick;

pub const MASK: &str = "[REDACTED]";

/// The hex (lower and upper case) and base64 (standard and URL-safe) forms of a secret. In
/// base64 the characters a secret turns into depend on where it starts within a group of
/// three bytes, so for each of the three positions the run of characters that only the
/// secret decides is taken (those of at least 8 characters: shorter runs would mask ordinary
/// text). This finds `echo -n "$PW" | base64` and the secret inside a longer encoded value.
pub fn encoded_forms(secret: &[u8]) -> Vec<String> {
    use base64::Engine;
    let hex = hex::encode(secret);
    let mut out = vec![hex.to_ascii_uppercase(), hex];
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
    ] {
        out.push(engine.encode(secret));
        for shift in 0..3usize {
            let mut bytes = vec![0u8; shift];
            bytes.extend_from_slice(secret);
            let encoded = engine.encode(&bytes);
            let start = if shift == 0 { 0 } else { 4 };
            let end = 4 * (bytes.len() / 3);
            if end >= start + 8 {
                out.push(encoded[start..end].to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Replaces every secret in a byte stream with [`MASK`].
pub struct Redactor {
    matcher: Option<AhoCorasick>,
    /// The longest secret, minus one: the tail that must wait for more input.
    keep: usize,
    multiline: bool,
    pending: Vec<u8>,
}

impl Redactor {
    /// Secrets shorter than 4 bytes are ignored: masking every `a` or `1` would make logs
    /// unreadable and protect nothing. Each secret is also looked for in the forms a step
    /// commonly prints it in: hex and base64 (see [`encoded_forms`]).
    pub fn new(secrets: &[String]) -> Redactor {
        let secrets: Vec<String> = secrets
            .iter()
            .filter(|s| s.len() >= 4)
            .flat_map(|s| std::iter::once(s.clone()).chain(encoded_forms(s.as_bytes())))
            .collect();
        let keep = secrets.iter().map(|s| s.len()).max().unwrap_or(1) - 1;
        let multiline = secrets.iter().any(|s| s.contains('\n'));
        Redactor {
            matcher: (!secrets.is_empty())
                .then(|| AhoCorasick::new(&secrets).ok())
                .flatten(),
            keep,
            multiline,
            pending: Vec::new(),
        }
    }

    /// Masks `text` whole (for a value shown once, such as a dry-run line).
    pub fn mask(&self, text: &str) -> String {
        match &self.matcher {
            Some(m) => m.replace_all(text, &vec![MASK; m.patterns_len()]),
            None => text.to_string(),
        }
    }

    /// Takes more output; returns what can be passed on now.
    pub fn push(&mut self, input: &[u8]) -> Vec<u8> {
        let Some(m) = &self.matcher else {
            return input.to_vec();
        };
        self.pending.extend_from_slice(input);
        // A secret without a newline never spans one: everything up to the last newline is
        // safe. Otherwise keep back as much as the longest secret could still need.
        let safe = if !self.multiline {
            match self.pending.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => self.pending.len().saturating_sub(self.keep.max(64 << 10)),
            }
        } else {
            self.pending.len().saturating_sub(self.keep)
        };
        // A match that starts in the safe part may run past it: extend to its end.
        let mut cut = safe;
        for mat in m.find_iter(&self.pending) {
            if mat.start() < safe && mat.end() > cut {
                cut = mat.end();
            }
        }
        let rest = self.pending.split_off(cut);
        let done = std::mem::replace(&mut self.pending, rest);
        m.replace_all_bytes(&done, &vec![MASK.as_bytes(); m.patterns_len()])
    }

    /// Whatever is still held back, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        let done = std::mem::take(&mut self.pending);
        match &self.matcher {
            Some(m) => m.replace_all_bytes(&done, &vec![MASK.as_bytes(); m.patterns_len()]),
            None => done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(secrets: &[&str], chunks: &[&[u8]]) -> Vec<u8> {
        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        let mut r = Redactor::new(&secrets);
        let mut out = Vec::new();
        for c in chunks {
            out.extend(r.push(c));
        }
        out.extend(r.finish());
        out
    }

    #[test]
    fn a_secret_split_across_reads_is_masked() {
        let out = run(
            &["hunter22"],
            &[b"pass=hun", b"ter22 ok\n", b"again hunter22"],
        );
        assert_eq!(out, b"pass=[REDACTED] ok\nagain [REDACTED]");
    }

    #[test]
    fn hex_and_base64_forms_are_masked_wherever_they_start() {
        use base64::Engine;
        let secret = "correct horse battery";
        let b64 = base64::engine::general_purpose::STANDARD;
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let printed = [
            b64.encode(secret),
            url.encode(format!("?{secret}")),
            b64.encode(format!("user:{secret}")),
            b64.encode(format!("ab{secret}xyz")),
            hex::encode(secret),
            hex::encode_upper(secret),
        ];
        for p in printed {
            let out = String::from_utf8(run(&[secret], &[p.as_bytes()])).unwrap();
            assert!(out.contains(MASK), "{p} -> {out}");
            // What is left around the mask is at most the few characters that the
            // neighbouring bytes share with the secret.
            assert!(out.len() < p.len(), "{p} -> {out}");
        }
    }

    #[test]
    fn short_values_are_not_masked() {
        assert_eq!(run(&["ab"], &[b"abc"]), b"abc");
    }

    proptest! {
        #[test]
        fn no_split_lets_a_secret_through(cuts in proptest::collection::vec(0usize..40, 0..6), multiline in any::<bool>()) {
            let secret = if multiline { "s3cr\net-value" } else { "s3cret-value" };
            let text = format!("a {secret} b\n{secret}{secret} c {secret}");
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort();
            let mut chunks = Vec::new();
            let mut last = 0;
            for c in cuts { chunks.push(&bytes[last..c]); last = c; }
            chunks.push(&bytes[last..]);
            let out = run(&[secret], &chunks);
            let out = String::from_utf8(out).unwrap();
            prop_assert!(!out.contains(secret));
            prop_assert_eq!(out.matches(MASK).count(), 4);
        }
    }
}
