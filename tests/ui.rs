//! Compile-time diagnostics as users see them: every `tests/ui/<topic>/fail/*.rs` must fail to compile with
//! exactly the errors in its `.stderr`; every `tests/ui/<topic>/pass/*.rs` must compile and run.
//! Regenerate snapshots with `TRYBUILD=overwrite cargo test --test ui`, then review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/fail/*.rs");
    t.pass("tests/ui/*/pass/*.rs");
}
