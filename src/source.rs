//! Source files as the corpus holds them: the text, a byte-offset → line/column index, and
//! the byte [`Span`]s that every finding carries. Lines and columns are computed only when a
//! finding is printed; both are 1-based and columns count Unicode scalar values.

use serde::Serialize;

/// A byte range into one source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span {
            start,
            end: end.max(start),
        }
    }

    pub fn shifted(self, by: usize) -> Self {
        Span::new(self.start + by, self.end + by)
    }

    pub fn from_range(r: std::ops::Range<usize>) -> Self {
        Span::new(r.start, r.end)
    }
}

/// One text file of the repository, with its path relative to the repository root
/// (always with `/` separators, never starting with `/`).
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
    /// Where each line starts; built on first use, since most files never need it.
    line_starts: std::sync::OnceLock<Vec<usize>>,
}

/// A 1-based position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl SourceFile {
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile {
            path: path.into(),
            text: text.into(),
            line_starts: std::sync::OnceLock::new(),
        }
    }

    fn line_starts(&self) -> &[usize] {
        self.line_starts.get_or_init(|| {
            let mut starts = vec![0];
            starts.extend(memchr_newlines(&self.text));
            starts
        })
    }

    /// The 1-based line and column of a byte offset (clamped to the text).
    pub fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line_starts = self.line_starts();
        let line = match line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = line_starts[line];
        let mut end = offset;
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let column = self.text[start..end].chars().count() + 1;
        Position {
            line: line + 1,
            column,
        }
    }

    /// The byte offset of a 1-based line and column (clamped to the text).
    pub fn offset(&self, line: usize, column: usize) -> usize {
        let Some(&start) = self.line_starts().get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let line_text = &self.text[start..];
        let line_end = line_text.find('\n').unwrap_or(line_text.len());
        let within = line_text[..line_end]
            .char_indices()
            .nth(column.saturating_sub(1))
            .map(|(i, _)| i)
            .unwrap_or(line_end);
        start + within
    }

    pub fn line_count(&self) -> usize {
        self.line_starts().len()
    }
}

fn memchr_newlines(text: &str) -> impl Iterator<Item = usize> + '_ {
    memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_chars() {
        let f = SourceFile::new("a.md", "ab\nÄé x\n");
        assert_eq!(f.position(0), Position { line: 1, column: 1 });
        assert_eq!(f.position(3), Position { line: 2, column: 1 });
        // "Äé " is 5 bytes; 'x' is the 4th character on line 2.
        assert_eq!(f.position(8), Position { line: 2, column: 4 });
        assert_eq!(f.offset(2, 4), 8);
        assert_eq!(f.offset(9, 1), f.text.len());
    }
}
