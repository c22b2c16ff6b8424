//! GitHub's heading anchors, as github-slugger computes them: lower-case the heading's text,
//! drop every character that is not a letter, mark, number, connector punctuation, space or
//! hyphen, turn each space into `-`, and number repeats (`x`, `x-1`, `x-2`). Written here
//! because no maintained crate reproduces GitHub's exact rules (repeat numbering included).

use rustc_hash::FxHashMap as HashMap;

/// The slug of one heading text, without de-duplication.
pub fn slug(text: &str) -> String {
    if text.is_ascii() {
        // The common case, without Unicode case mapping.
        let mut out = String::with_capacity(text.len());
        for b in text.bytes() {
            match b {
                b' ' => out.push('-'),
                b'-' | b'_' => out.push(b as char),
                b if b.is_ascii_alphanumeric() => out.push(b.to_ascii_lowercase() as char),
                _ => {}
            }
        }
        return out;
    }
    text.chars()
        .flat_map(char::to_lowercase)
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() || is_mark(c) || is_connector(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn is_mark(c: char) -> bool {
    // Combining marks (general category M) in the blocks where headings use them.
    matches!(c as u32, 0x0300..=0x036F | 0x0483..=0x0489 | 0x0591..=0x05C7 | 0x0610..=0x061A
        | 0x064B..=0x065F | 0x0900..=0x0903 | 0x093A..=0x094F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF
        | 0x20D0..=0x20FF | 0xFE00..=0xFE0F | 0xFE20..=0xFE2F)
}

fn is_connector(c: char) -> bool {
    matches!(
        c,
        '\u{203F}' | '\u{2040}' | '\u{2054}' | '\u{FE33}' | '\u{FE34}' | '\u{FE4D}'
            ..='\u{FE4F}' | '\u{FF3F}'
    )
}

/// Numbers repeated slugs the way GitHub does within one document.
#[derive(Default, Debug)]
pub struct Slugger {
    occurrences: HashMap<String, usize>,
}

impl Slugger {
    pub fn slug(&mut self, text: &str) -> String {
        let base = slug(text);
        let mut result = base.clone();
        while self.occurrences.contains_key(&result) {
            let n = self.occurrences.get_mut(&base).map(|n| {
                *n += 1;
                *n
            });
            result = format!("{base}-{}", n.unwrap_or(1));
        }
        self.occurrences.insert(result.clone(), 0);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_slugs() {
        assert_eq!(
            slug("Recovery Point Objective (RPO)"),
            "recovery-point-objective-rpo"
        );
        assert_eq!(slug("3-2-1-1-0 Rule"), "3-2-1-1-0-rule");
        assert_eq!(slug("CI/CD"), "cicd");
        assert_eq!(slug("a -- b"), "a----b");
        assert_eq!(slug("Hardware Procedures "), "hardware-procedures-");
        assert_eq!(slug("Größe & Maß"), "größe--maß");
        assert_eq!(slug("snake_case? yes!"), "snake_case-yes");
        assert_eq!(slug("1. Backup Schedule"), "1-backup-schedule");
        assert_eq!(slug("Emoji 🚀 rocket"), "emoji--rocket");
    }

    #[test]
    fn repeats_are_numbered() {
        let mut s = Slugger::default();
        assert_eq!(s.slug("Backup"), "backup");
        assert_eq!(s.slug("Backup"), "backup-1");
        assert_eq!(s.slug("Backup"), "backup-2");
        // A heading that literally reads "Backup 1" after that collides and moves on.
        let mut s = Slugger::default();
        assert_eq!(s.slug("Foo"), "foo");
        assert_eq!(s.slug("Foo 1"), "foo-1");
        assert_eq!(s.slug("Foo"), "foo-2");
    }
}
