//! The provenance sopkit writes into a PDF's keywords (`sopkit-commit=…` and friends) and
//! reads back for `verify-pdf`. typst writes keywords both into the document information
//! dictionary and into the XMP packet; we read them from the raw bytes, where each keyword
//! appears as plain ASCII.

pub const SOP: &str = "sopkit-sop=";
pub const PATH: &str = "sopkit-path=";
pub const COMMIT: &str = "sopkit-commit=";
pub const SHA256: &str = "sopkit-sha256=";
pub const VERSION: &str = "sopkit-version=";
/// Present (`yes`) when the redline against the version before follows as an appendix.
pub const WITH_CHANGES: &str = "sopkit-with-changes=";
/// On a redline: the commit of its old side (`worktree` when it was the working tree).
pub const REDLINE_FROM: &str = "sopkit-redline-from=";

/// What a sopkit PDF says about where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub sop: String,
    pub path: Option<String>,
    pub commit: String,
    pub sha256: Option<String>,
    pub version: String,
    pub with_changes: bool,
    pub redline_from: Option<String>,
}

impl Provenance {
    pub fn uncommitted(&self) -> bool {
        self.commit.ends_with("+uncommitted")
    }
}

/// The value of the first `key…` in `bytes`, up to a character that cannot be part of it.
fn find(bytes: &[u8], key: &str) -> Option<String> {
    let at = memchr::memmem::find(bytes, key.as_bytes())? + key.len();
    let rest = &bytes[at..];
    let end = rest
        .iter()
        .position(|&b| {
            !b.is_ascii_graphic() || matches!(b, b'<' | b'>' | b'(' | b')' | b',' | b'\\')
        })
        .unwrap_or(rest.len());
    let v = String::from_utf8_lossy(&rest[..end]).into_owned();
    (!v.is_empty()).then_some(v)
}

/// A keyword value as written: percent-encoded, so that spaces and non-ASCII characters in
/// paths survive the trip through the PDF.
pub fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn decode(value: String) -> String {
    percent_encoding::percent_decode_str(&value)
        .decode_utf8_lossy()
        .into_owned()
}

/// Reads the provenance of a PDF that sopkit made; `None` when there is none.
pub fn read(pdf: &[u8]) -> Option<Provenance> {
    Some(Provenance {
        sop: decode(find(pdf, SOP)?),
        path: find(pdf, PATH).map(decode),
        commit: find(pdf, COMMIT)?,
        sha256: find(pdf, SHA256),
        version: find(pdf, VERSION)?,
        with_changes: find(pdf, WITH_CHANGES).is_some_and(|v| v == "yes"),
        redline_from: find(pdf, REDLINE_FROM),
    })
}
