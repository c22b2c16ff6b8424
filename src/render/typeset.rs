//! typst, in-process: typst source and a fixed set of files in, PDF bytes out. The world
//! answers only the main source and the files it was given (images the converter
//! registered); every other path is denied, there is no package access, and the date is the
//! one passed in, never the clock. Fonts are the ones embedded in the binary, loaded once.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use typst::diag::{FileError, FileResult, SourceDiagnostic};
use typst::foundations::{Bytes, Datetime, Duration, Smart};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World};
use typst_layout::PagedDocument;
use typst_pdf::{PdfOptions, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("typst could not typeset the document:\n{0}")]
    Typst(String),
    #[error("bad virtual path {0}")]
    Path(String),
}

/// What one compilation needs.
pub struct Job {
    pub source: String,
    /// Virtual path (`/img/…`) → bytes.
    pub files: BTreeMap<String, Vec<u8>>,
    /// UTC seconds since the epoch: the PDF's creation date and typst's `today`.
    pub time: i64,
    /// A stable document identifier (the PDF's /ID is derived from it).
    pub ident: String,
}

struct Fonts {
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
}

static FONTS: LazyLock<Fonts> = LazyLock::new(|| {
    let fonts: Vec<Font> = typst_assets::fonts()
        .flat_map(|data| Font::iter(Bytes::new(data)))
        .collect();
    Fonts {
        book: LazyHash::new(FontBook::from_fonts(&fonts)),
        fonts,
    }
});

static LIBRARY: LazyLock<LazyHash<Library>> = LazyLock::new(|| LazyHash::new(Library::default()));

fn file_id(path: &str) -> Result<FileId, Error> {
    let vpath = VirtualPath::new(path).map_err(|_| Error::Path(path.to_string()))?;
    Ok(RootedPath::new(VirtualRoot::Project, vpath).intern())
}

struct SopWorld {
    main: Source,
    files: std::collections::HashMap<FileId, Bytes>,
    today: Option<Datetime>,
}

impl World for SopWorld {
    fn library(&self) -> &LazyHash<Library> {
        &LIBRARY
    }
    fn book(&self) -> &LazyHash<FontBook> {
        &FONTS.book
    }
    fn main(&self) -> FileId {
        self.main.id()
    }
    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.main.id() {
            Ok(self.main.clone())
        } else {
            Err(FileError::AccessDenied)
        }
    }
    fn file(&self, id: FileId) -> FileResult<Bytes> {
        self.files.get(&id).cloned().ok_or(FileError::AccessDenied)
    }
    fn font(&self, index: usize) -> Option<Font> {
        FONTS.fonts.get(index).cloned()
    }
    fn today(&self, _offset: Option<Duration>) -> Option<Datetime> {
        self.today
    }
}

fn datetime(t: i64) -> Option<Datetime> {
    let d = time::OffsetDateTime::from_unix_timestamp(t).ok()?;
    Datetime::from_ymd_hms(
        d.year(),
        d.month() as u8,
        d.day(),
        d.hour(),
        d.minute(),
        d.second(),
    )
}

/// Loads the embedded fonts now (they are otherwise loaded by the first compilation).
pub fn warm_up() {
    LazyLock::force(&FONTS);
    LazyLock::force(&LIBRARY);
}

/// The stack of the thread a compilation runs on. typst recurses deeply while laying out a
/// long document: rayon's 2 MiB worker stacks overflowed on ordinary 5-page SOPs (measured),
/// and a stack overflow aborts the process. Only the pages touched are ever committed.
const STACK_SIZE: usize = 256 << 20;

/// Typesets `job.source` into a PDF, on a thread of its own: with a stack large enough for
/// typst, and whose per-thread caches go away with it (measured: compiling one SOP after
/// another on one long-lived worker thread kept about 4 MB per SOP alive, however hard the
/// memoisation cache was evicted).
pub fn pdf(job: Job) -> Result<Vec<u8>, Error> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("sopkit-typst".into())
            .stack_size(STACK_SIZE)
            .spawn_scoped(scope, || compile(job))
            .map_err(|e| Error::Typst(format!("  could not start a thread: {e}\n")))?
            .join()
            .unwrap_or_else(|_| Err(Error::Typst("  typst panicked\n".into())))
    })
}

fn compile(job: Job) -> Result<Vec<u8>, Error> {
    let main = Source::new(file_id("/sop.typ")?, job.source);
    let mut files = std::collections::HashMap::new();
    for (path, bytes) in job.files {
        files.insert(file_id(&path)?, Bytes::new(bytes));
    }
    let stamp = datetime(job.time);
    let world = SopWorld {
        main,
        files,
        today: stamp,
    };
    let document: PagedDocument = typst::compile(&world)
        .output
        .map_err(|errors| Error::Typst(describe(&world, &errors)))?;
    let options = PdfOptions {
        ident: Smart::Custom(job.ident),
        creator: Smart::Custom(Some(format!("sopkit {}", env!("CARGO_PKG_VERSION")))),
        timestamp: stamp.map(Timestamp::new_utc),
        ..PdfOptions::default()
    };
    let bytes =
        typst_pdf::pdf(&document, &options).map_err(|e| Error::Typst(describe(&world, &e)))?;
    // typst memoises across compilations; a long `build` would otherwise keep every SOP's
    // intermediate results.
    typst::comemo::evict(4);
    Ok(bytes)
}

/// Typst diagnostics as text, each with its line in the generated source.
fn describe(world: &SopWorld, errors: &[SourceDiagnostic]) -> String {
    use typst::WorldExt;
    let mut s = String::new();
    for e in errors.iter().take(10) {
        let line = world
            .range(e.span)
            .map(|r| {
                world
                    .main
                    .lines()
                    .byte_to_line(r.start)
                    .map_or(0, |l| l + 1)
            })
            .unwrap_or(0);
        s.push_str(&format!("  generated source line {line}: {}\n", e.message));
        for h in &e.hints {
            s.push_str(&format!("    hint: {}\n", h.v));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(source: &str) -> Job {
        Job {
            source: source.to_string(),
            files: BTreeMap::new(),
            time: 1_700_000_000,
            ident: "test".into(),
        }
    }

    #[test]
    fn typesets_and_is_reproducible() {
        let a = pdf(job("= Hello\nWorld")).unwrap();
        let b = pdf(job("= Hello\nWorld")).unwrap();
        assert!(a.starts_with(b"%PDF-"));
        assert_eq!(a, b);
    }

    #[test]
    fn files_and_packages_are_denied() {
        let e = pdf(job("#read(\"/etc/passwd\")")).unwrap_err().to_string();
        assert!(e.contains("denied") || e.contains("access"), "{e}");
        let e = pdf(job("#import \"@preview/x:0.1.0\": *"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1"), "{e}");
    }
}
