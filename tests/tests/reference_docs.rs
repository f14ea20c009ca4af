//! docs/reference.md is what `sluice docs` generates from the specs: no drift.

#[test]
fn reference_docs_match_the_specs() {
    let generated = sluice::reference::markdown(&sluice::registry::builtin());
    let path = sluice_tests::repo_root().join("docs/reference.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        generated == committed,
        "docs/reference.md is out of date: run `sluice docs > docs/reference.md`"
    );
    assert!(generated.contains("### `file-source` (source)"));
}
