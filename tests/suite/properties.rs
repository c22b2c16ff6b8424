//! Property tests: the parsers never panic, and link resolution never leaves the repository.

use proptest::prelude::*;
use sopkit::corpus::{front_matter, markdown, step};
use sopkit::source::{SourceFile, Span};

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn front_matter_never_panics(yaml in "[-a-z:{}\\[\\]&*!|>'\" \n0-9#,.]{0,200}") {
        let text = format!("---\n{yaml}\n---\n# T\n");
        let file = SourceFile::new("p.md", text);
        if let Ok(Some(block)) = front_matter::split(&file.text) {
            match front_matter::parse_sop(&file, block) {
                Ok((_, problems)) => for p in problems { prop_assert!(p.span.end <= file.text.len()); },
                Err(p) => prop_assert!(p.span.end <= file.text.len()),
            }
        }
    }

    #[test]
    fn info_strings_never_panic(info in "[a-z]{0,4} ?\\{[a-z=\" ,.{}\\\\]{0,40}\\}?") {
        let _ = step::parse_info(&info);
        let _ = step::from_block(&info, "a: b\n", Span::new(0, 1), Span::new(0, 1));
    }

    #[test]
    fn markdown_never_panics(body in "(\\[[a-z^ ]{0,5}\\](\\([a-z#./%]{0,10}\\))?|#{1,3} [a-z]{0,5}\n|```[a-z {}=]{0,12}\n|[a-z \n>*_`-]|<a id=\"x\">){0,40}") {
        let md = markdown::parse(&body, 0);
        for l in &md.links { prop_assert!(l.span.end <= body.len()); }
        for p in &md.prose { prop_assert!(p.end <= body.len()); }
    }

    #[test]
    fn normalized_paths_stay_inside(path in "(\\.\\.|\\.|[a-z]{1,3}|%2e|/){0,12}") {
        if let Some(n) = sopkit::tree::normalize(&path) {
            prop_assert!(!n.starts_with('/'));
            prop_assert!(!n.split('/').any(|s| s == ".." || s == "."));
        }
    }
}

#[test]
fn link_resolution_never_leaves_the_repository() {
    let r = crate::support::Repo::clean();
    let corpus =
        sopkit::corpus::Corpus::load(sopkit::tree::Tree::open_dir(r.path()).unwrap()).unwrap();
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(
            &"(\\.\\./|\\./|[a-z]{1,3}/|%2e%2e/|/){0,8}[a-z]{0,3}(\\.md)?(#[a-z%]{0,4})?",
            |dest| {
                use sopkit::check::links::{Target, resolve};
                match resolve(&corpus, "procedures/QA-001-demo.md", &dest) {
                    Target::Path { path, .. } => {
                        prop_assert!(!path.starts_with('/'));
                        prop_assert!(!path.split('/').any(|s| s == ".."), "{path}");
                    }
                    Target::Outside
                    | Target::SameDocument { .. }
                    | Target::Empty
                    | Target::External => {}
                }
                Ok(())
            },
        )
        .unwrap();
}
