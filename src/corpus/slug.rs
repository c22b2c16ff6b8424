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
            '-' => Some(c),
            c if kept(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// What GitHub keeps of a heading: alphabetic characters (letters, letter numbers, and the
/// symbols Unicode counts as alphabetic, such as `ⓐ`), marks, decimal numbers and connector
/// punctuation (`_`, `‿`); other numbers (`² ½ ① ₂`) and every other symbol go.
fn kept(c: char) -> bool {
    use unicode_properties::{GeneralCategory as G, GeneralCategoryGroup, UnicodeGeneralCategory};
    c.is_alphabetic()
        || c.general_category_group() == GeneralCategoryGroup::Mark
        || matches!(
            c.general_category(),
            G::DecimalNumber | G::ConnectorPunctuation
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
    fn marks_of_every_script_stay_and_other_numbers_go() {
        // Viramas, nuktas and tone marks are marks (Mn/Mc): kept, in every script.
        assert_eq!(slug("தமிழ் மொழி"), "தமிழ்-மொழி"); // Tamil virama U+0BCD
        assert_eq!(slug("বাংলা ভাষা"), "বাংলা-ভাষা"); // Bengali vowel signs, virama
        assert_eq!(slug("ਪੰਜਾਬੀ"), "ਪੰਜਾਬੀ"); // Gurmukhi tippi U+0A70
        assert_eq!(slug("ภาษาไทย่"), "ภาษาไทย่"); // Thai tone mark U+0E48
        assert_eq!(slug("བོད་ཡིག"), "བོདཡིག"); // Tibetan vowel sign kept, tsheg (Po) gone
        assert_eq!(slug("ᬩᬲᬩᬮᬶ"), "ᬩᬲᬩᬮᬶ"); // Balinese vowel sign U+1B36
        // Other numbers (No) go; decimal (Nd) and letter numbers (Nl) stay.
        assert_eq!(slug("x² and ½"), "x-and-");
        assert_eq!(slug("① Step"), "-step");
        assert_eq!(slug("H₂O"), "ho");
        assert_eq!(slug("Ⅻ Roman ٣"), "ⅻ-roman-٣");
        // Hebrew maqaf (Pd) and paseq (Po) go; its points (Mn) stay.
        assert_eq!(slug("בית־ספר"), "ביתספר");
        assert_eq!(slug("א׀ב"), "אב");
        assert_eq!(slug("שָׁלוֹם"), "שָׁלוֹם");
        // Connector punctuation stays, other dashes go.
        assert_eq!(slug("a‿b – c"), "a‿b--c");
    }

    #[test]
    fn a_dropped_number_shifts_repeat_numbering_as_github_does() {
        // "Step ①" slugs to "step-", so it does not collide with "Step".
        let mut s = Slugger::default();
        assert_eq!(s.slug("Step"), "step");
        assert_eq!(s.slug("Step ①"), "step-");
        assert_eq!(s.slug("Step"), "step-1");
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
