//! The README's regulatory map (between `<!-- regulatory-map:start -->` and
//! `<!-- regulatory-map:end -->`) is checked against the code:
//!
//! - every clause of 21 CFR Part 11, EU GMP Annex 11 and ALCOA+ listed in [`REQUIRED`] has
//!   exactly one row, so a row cannot disappear without this test failing;
//! - every row's Tests cell either names tests, each in backticks, as
//!   `suite::MODULE::FUNCTION` (`tests/suite/MODULE.rs`, declared in `tests/suite/main.rs`)
//!   or `sopkit::PATH::tests::FUNCTION` (the `tests` module of `src/PATH.rs` or
//!   `src/PATH/mod.rs`), or says `none` and names no test;
//! - every named test exists: a `fn FUNCTION(` carrying a `#[test]` attribute (other
//!   attributes and comments may stand around it), neither `#[ignore]`d nor under a `cfg`
//!   attribute, in a module that no `cfg` attribute leaves out of the build.
//!
//! Existence is all this checks, and it is enough: CI runs the whole suite (`.ci/run` runs
//! `scripts/test`, which runs `cargo test --features test-clock`), so a test that exists, is
//! compiled and is not ignored has passed on every green build. The checker's own failures
//! are tested too, on small maps held in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const START: &str = "<!-- regulatory-map:start -->";
const END: &str = "<!-- regulatory-map:end -->";

/// The clauses the map must have a row for, as each row's first cell names them in bold.
const REQUIRED: &[&str] = &[
    "Part 11 §11.10(a)",
    "Part 11 §11.10(b)",
    "Part 11 §11.10(c)",
    "Part 11 §11.10(d)",
    "Part 11 §11.10(e)",
    "Part 11 §11.10(f)",
    "Part 11 §11.10(g)",
    "Part 11 §11.10(h)",
    "Part 11 §11.10(i)",
    "Part 11 §11.10(j)",
    "Part 11 §11.10(k)",
    "Part 11 §11.50",
    "Part 11 §11.70",
    "Part 11 §11.100",
    "Part 11 §11.200",
    "Annex 11 §7.1",
    "Annex 11 §7.2",
    "Annex 11 §9",
    "Annex 11 §12.4",
    "Annex 11 §14",
    "Annex 11 §17",
    "ALCOA+ Attributable",
    "ALCOA+ Legible",
    "ALCOA+ Contemporaneous",
    "ALCOA+ Original",
    "ALCOA+ Accurate",
    "ALCOA+ Complete",
    "ALCOA+ Consistent",
    "ALCOA+ Enduring",
    "ALCOA+ Available",
];

/// A test the map names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TestRef {
    /// `suite::MODULE::NAME`: an integration test in `tests/suite/MODULE.rs`.
    Suite { module: String, name: String },
    /// `sopkit::A::B::tests::NAME`: a unit test in the `tests` module of `src/A/B.rs`.
    Unit { modules: Vec<String>, name: String },
}

impl std::fmt::Display for TestRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TestRef::Suite { module, name } => write!(f, "suite::{module}::{name}"),
            TestRef::Unit { modules, name } => {
                write!(f, "sopkit::{}::tests::{name}", modules.join("::"))
            }
        }
    }
}

/// One row of the map: its clause id and the tests it names (none when it says `none`).
#[derive(Debug)]
struct Row {
    clause: String,
    tests: Vec<TestRef>,
}

/// Reads a file by its path relative to the package root; `None` when there is none.
type Read<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Checks the map in `readme`: its rows against `required`, and every test it names against
/// the files `read` gives. Every problem found is returned, not only the first.
fn verify(readme: &str, required: &[&str], read: Read<'_>) -> Result<Vec<Row>, Vec<String>> {
    let table = between_markers(readme).map_err(|e| vec![e])?;
    let (rows, mut problems) = parse(table);
    let mut seen = BTreeMap::new();
    for row in &rows {
        *seen.entry(row.clause.as_str()).or_insert(0) += 1;
    }
    for (clause, n) in &seen {
        if *n > 1 {
            problems.push(format!("{clause}: {n} rows, where one is expected"));
        }
    }
    for clause in required {
        if !seen.contains_key(clause) {
            problems.push(format!("{clause}: no row, though the map must have one"));
        }
    }
    let named: BTreeSet<&TestRef> = rows.iter().flat_map(|r| &r.tests).collect();
    for test in named {
        if let Err(e) = exists(test, read) {
            problems.push(format!("{test}: {e}"));
        }
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(problems)
    }
}

/// The text between the start and end markers, each present exactly once and in order.
fn between_markers(readme: &str) -> Result<&str, String> {
    let count = |m: &str| readme.matches(m).count();
    if count(START) != 1 || count(END) != 1 {
        return Err(format!(
            "the map needs exactly one `{START}` and one `{END}` (found {} and {})",
            count(START),
            count(END)
        ));
    }
    let start = readme.find(START).unwrap() + START.len();
    let end = readme.find(END).unwrap();
    if end < start {
        return Err(format!("`{END}` comes before `{START}`"));
    }
    Ok(&readme[start..end])
}

/// The cells of a table line, split at every `|` that no backslash escapes.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut out = vec![String::new()];
    let mut escaped = false;
    for c in inner.chars() {
        if c == '|' && !escaped {
            out.push(String::new());
        } else {
            out.last_mut().unwrap().push(c);
        }
        escaped = c == '\\' && !escaped;
    }
    out.into_iter().map(|c| c.trim().to_string()).collect()
}

/// The rows of the one table between the markers, and every problem with them: a header
/// without a `Tests` column, a row with another number of cells than the header, a first cell
/// that does not start with the clause in bold, a Tests cell that names no test and does not
/// say `none`, or says `none` and names one, or holds something in backticks that is not a
/// test name.
fn parse(table: &str) -> (Vec<Row>, Vec<String>) {
    let mut problems = Vec::new();
    let lines: Vec<&str> = table
        .lines()
        .filter(|l| l.trim_start().starts_with('|'))
        .collect();
    let [header, _separator, body @ ..] = lines.as_slice() else {
        return (Vec::new(), vec!["no table between the markers".into()]);
    };
    let header = cells(header);
    let Some(tests_at) = header.iter().position(|h| h == "Tests") else {
        return (Vec::new(), vec![format!("no `Tests` column in {header:?}")]);
    };
    let mut rows = Vec::new();
    for line in body {
        let cells = cells(line);
        let clause = cells[0]
            .strip_prefix("**")
            .and_then(|rest| rest.split_once("**"))
            .map(|(clause, _)| clause.to_string());
        let Some(clause) = clause else {
            problems.push(format!(
                "a row whose first cell names no clause in bold: {line}"
            ));
            continue;
        };
        if cells.len() != header.len() {
            problems.push(format!(
                "{clause}: {} cells where the header has {} (an unescaped `|`?)",
                cells.len(),
                header.len()
            ));
            continue;
        }
        let cell = &cells[tests_at];
        let mut tests = Vec::new();
        for span in code_spans(cell) {
            match test_ref(span) {
                Ok(t) => tests.push(t),
                Err(e) => problems.push(format!("{clause}: `{span}`: {e}")),
            }
        }
        let says_none = cell.starts_with("none");
        if says_none && !tests.is_empty() {
            problems.push(format!(
                "{clause}: the Tests cell says `none` but names tests"
            ));
        }
        if !says_none && tests.is_empty() && !cell.contains('`') {
            problems.push(format!(
                "{clause}: the Tests cell names no test and does not say `none`"
            ));
        }
        rows.push(Row { clause, tests });
    }
    (rows, problems)
}

/// The texts in backticks in `cell`.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// A test name as the map writes it.
fn test_ref(text: &str) -> Result<TestRef, String> {
    let parts: Vec<&str> = text.split("::").collect();
    let ident = |s: &str| {
        !s.is_empty()
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if !parts.iter().all(|p| ident(p)) {
        return Err("not a path of lower-case Rust identifiers".into());
    }
    match parts.as_slice() {
        ["suite", module, name] => Ok(TestRef::Suite {
            module: module.to_string(),
            name: name.to_string(),
        }),
        ["sopkit", modules @ .., "tests", name] if !modules.is_empty() => Ok(TestRef::Unit {
            modules: modules.iter().map(|m| m.to_string()).collect(),
            name: name.to_string(),
        }),
        _ => Err("neither `suite::MODULE::FUNCTION` nor `sopkit::PATH::tests::FUNCTION`".into()),
    }
}

/// Whether `test` exists as a test the suite compiles and runs.
fn exists(test: &TestRef, read: Read<'_>) -> Result<(), String> {
    match test {
        TestRef::Suite { module, name } => {
            let main = "tests/suite/main.rs";
            let text = read(main).ok_or(format!("{main} cannot be read"))?;
            declared(&text, module).map_err(|e| format!("{main}: {e}"))?;
            let file = format!("tests/suite/{module}.rs");
            let text = read(&file).ok_or(format!("{file} does not exist"))?;
            test_fn(&text, name, 0).map_err(|e| format!("{file}: {e}"))
        }
        TestRef::Unit { modules, name } => {
            let mut parent = "src/lib.rs".to_string();
            let mut text = read(&parent).ok_or("src/lib.rs cannot be read")?;
            for (i, module) in modules.iter().enumerate() {
                declared(&text, module).map_err(|e| format!("{parent}: {e}"))?;
                let dir = modules[..=i].join("/");
                let (file, found) = [format!("src/{dir}.rs"), format!("src/{dir}/mod.rs")]
                    .into_iter()
                    .find_map(|f| read(&f).map(|t| (f, t)))
                    .ok_or(format!("neither src/{dir}.rs nor src/{dir}/mod.rs exists"))?;
                (parent, text) = (file, found);
            }
            let lines: Vec<&str> = text.lines().collect();
            let tests_mod = lines
                .iter()
                .position(|l| l.trim() == "mod tests {" || l.trim().ends_with(" mod tests {"))
                .ok_or(format!("{parent} has no `mod tests`"))?;
            test_fn(&text, name, tests_mod + 1).map_err(|e| format!("{parent}: {e}"))
        }
    }
}

/// Whether `text` declares `mod MODULE;` without a `cfg` attribute that could leave it out.
fn declared(text: &str, module: &str) -> Result<(), String> {
    let lines: Vec<&str> = text.lines().collect();
    let decl = [format!("mod {module};"), format!("pub mod {module};")];
    let at = lines
        .iter()
        .position(|l| decl.contains(&l.trim().to_string()))
        .ok_or(format!("declares no `mod {module};`"))?;
    match attributes_above(&lines, at)
        .iter()
        .find(|a| a.starts_with("#[cfg"))
    {
        Some(cfg) => Err(format!("`mod {module};` is compiled only under {cfg}")),
        None => Ok(()),
    }
}

/// Whether `text`, from line `from` on, has `fn NAME(` as a test that runs: with `#[test]`,
/// without `#[ignore]` (or a `cfg_attr` that may add it), and without a `cfg` attribute.
fn test_fn(text: &str, name: &str, from: usize) -> Result<(), String> {
    let lines: Vec<&str> = text.lines().collect();
    let head = format!("fn {name}(");
    let mut why_not = None;
    for (at, line) in lines.iter().enumerate().skip(from) {
        let line = line.trim();
        let line = line.strip_prefix("pub ").unwrap_or(line);
        if !line.starts_with(&head) {
            continue;
        }
        let attributes = attributes_above(&lines, at);
        let problem = if !attributes.iter().any(|a| a == "#[test]") {
            Some("has no #[test] attribute")
        } else if attributes.iter().any(|a| a.contains("ignore")) {
            Some("is ignored")
        } else if attributes.iter().any(|a| a.starts_with("#[cfg")) {
            Some("is compiled only under a cfg attribute")
        } else {
            None
        };
        match problem {
            None => return Ok(()),
            Some(p) => why_not = Some(format!("`fn {name}` (line {}) {p}", at + 1)),
        }
    }
    Err(why_not.unwrap_or(format!("has no `fn {name}(`")))
}

/// The attributes written above line `at`, each on one line (whitespace removed), skipping
/// comments and blank lines; an attribute over several lines is joined into one.
fn attributes_above(lines: &[&str], at: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = at;
    while i > 0 {
        i -= 1;
        let line = lines[i].trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        if line.starts_with("#[") {
            out.push(line.split_whitespace().collect());
            continue;
        }
        if line.ends_with(']') {
            // The last line of an attribute written over several lines: read up to its `#[`.
            let end = i;
            while i > 0 && !lines[i].trim().starts_with("#[") {
                i -= 1;
            }
            if lines[i].trim().starts_with("#[") {
                out.push(lines[i..=end].concat().split_whitespace().collect());
                continue;
            }
        }
        break;
    }
    out
}

#[test]
fn the_readme_regulatory_map_covers_every_clause_and_names_only_tests_that_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let read = |path: &str| std::fs::read_to_string(root.join(path)).ok();
    let rows = verify(&readme, REQUIRED, &read).unwrap_or_else(|problems| {
        panic!(
            "the regulatory map in README.md is wrong:\n{}",
            problems.join("\n")
        )
    });
    assert!(rows.len() >= REQUIRED.len(), "{rows:?}");
    let named: usize = rows.iter().map(|r| r.tests.len()).sum();
    assert!(named >= REQUIRED.len(), "{named} tests named in all");
}

/// Files of a small made-up package for the checker's own tests.
fn package(files: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let files: BTreeMap<String, String> = files
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
    move |path| files.get(path).cloned()
}

const SUITE_MAIN: &str = "mod support;\n\nmod demo;\n";
const SUITE_DEMO: &str = "use x;\n\n#[test]\nfn present() {}\n\n#[test]\n/// A doc comment.\n#[should_panic]\nfn present_between_attributes() {}\n\n#[ignore]\n#[test]\nfn ignored_above() {}\n\n#[test]\n#[ignore = \"slow\"]\nfn ignored_below() {}\n\n#[test]\n#[cfg_attr(\n    feature = \"x\",\n    ignore\n)]\nfn ignored_over_lines() {}\n\n#[cfg(feature = \"gpgme\")]\n#[test]\nfn only_with_a_feature() {}\n\nfn helper() {}\n";
const LIB: &str = "pub mod a;\n#[cfg(feature = \"gpgme\")]\npub mod gated;\n";
const LIB_A: &str = "fn outside() {}\n\n#[test]\nfn before_tests() {}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn inside() {}\n}\n";
const GATED: &str = "#[cfg(test)]\nmod tests {\n    #[test]\n    fn t() {}\n}\n";

/// A README whose map has one row per clause in `rows`, each naming the Tests cell given.
fn readme(rows: &[(&str, &str)]) -> String {
    let mut text =
        format!("# Demo\n\n{START}\n\n| Clause | What | Tests | Yours |\n|---|---|---|---|\n");
    for (clause, tests) in rows {
        text.push_str(&format!("| **{clause}**: asks | does | {tests} | you |\n"));
    }
    text.push_str(&format!("\n{END}\n"));
    text
}

fn problems_of(rows: &[(&str, &str)], required: &[&str]) -> Vec<String> {
    let read = package(&[
        ("tests/suite/main.rs", SUITE_MAIN),
        ("tests/suite/demo.rs", SUITE_DEMO),
        ("src/lib.rs", LIB),
        ("src/a.rs", LIB_A),
        ("src/gated.rs", GATED),
    ]);
    match verify(&readme(rows), required, &read) {
        Ok(_) => Vec::new(),
        Err(problems) => problems,
    }
}

/// The checker can fail: the made-up map passes as long as it names real tests, and each way
/// of naming a test that does not run is an error naming that test.
#[test]
fn the_map_checker_fails_on_a_test_that_does_not_exist_or_does_not_run() {
    let good = "`suite::demo::present`<br>`suite::demo::present_between_attributes`<br>`sopkit::a::tests::inside`";
    assert_eq!(
        problems_of(&[("X 1", good)], &["X 1"]),
        Vec::<String>::new()
    );
    assert_eq!(
        problems_of(&[("X 1", "none: nothing in sopkit does this")], &["X 1"]),
        Vec::<String>::new()
    );

    for (named, why) in [
        ("suite::demo::absent", "has no `fn absent(`"),
        ("suite::nowhere::present", "declares no `mod nowhere;`"),
        ("suite::demo::helper", "has no #[test] attribute"),
        ("suite::demo::ignored_above", "is ignored"),
        ("suite::demo::ignored_below", "is ignored"),
        ("suite::demo::ignored_over_lines", "is ignored"),
        (
            "suite::demo::only_with_a_feature",
            "compiled only under a cfg",
        ),
        ("sopkit::a::tests::outside", "has no `fn outside(`"),
        (
            "sopkit::a::tests::before_tests",
            "has no `fn before_tests(`",
        ),
        ("sopkit::a::tests::absent", "has no `fn absent(`"),
        ("sopkit::b::tests::inside", "declares no `mod b;`"),
        (
            "sopkit::gated::tests::t",
            "compiled only under #[cfg(feature=\"gpgme\")]",
        ),
    ] {
        let cell = format!("`suite::demo::present`<br>`{named}`");
        let problems = problems_of(&[("X 1", &cell)], &["X 1"]);
        assert!(
            problems.len() == 1 && problems[0].starts_with(named) && problems[0].contains(why),
            "{named}: {problems:?}"
        );
    }
}

/// Rows that name nothing, say `none` and name a test, misspell a test path, go missing,
/// come twice, or lose a cell are each an error naming the clause.
#[test]
fn the_map_checker_fails_on_a_row_missing_doubled_or_naming_nothing() {
    let ok = "`suite::demo::present`";
    let none_and_a_test = format!("none, but {ok}");
    let cases: [(&[(&str, &str)], &str); 6] = [
        (
            &[("X 1", "to be written")],
            "X 1: the Tests cell names no test",
        ),
        (
            &[("X 1", none_and_a_test.as_str())],
            "X 1: the Tests cell says `none`",
        ),
        (
            &[("X 1", "`suit::demo::present`")],
            "X 1: `suit::demo::present`: neither",
        ),
        (&[("X 2", ok)], "X 1: no row"),
        (&[("X 1", ok), ("X 1", ok)], "X 1: 2 rows"),
        (&[("X 1", "`a` \\| b | extra")], "X 1: 5 cells"),
    ];
    for (rows, expected) in cases {
        let problems = problems_of(rows, &["X 1"]);
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{rows:?}: {problems:?}"
        );
    }
    assert!(
        verify("no map here", &[], &package(&[]))
            .unwrap_err()
            .iter()
            .any(|p| p.contains("exactly one")),
        "a README without the markers fails"
    );
}
