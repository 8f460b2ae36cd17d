//! Compile-time diagnostics as users see them: every `tests/ui/<topic>/fail/*.rs` must fail to compile with
//! exactly the errors in its `.stderr`; every `tests/ui/<topic>/pass/*.rs` must compile and run.
//! Regenerate snapshots with `TRYBUILD=overwrite cargo test --test ui`, then review the diff.

#[test]
fn ui() {
    // trybuild builds modelc and all its dependencies once more, in `target/tests/trybuild` and with its
    // own flags (`--cfg trybuild`), so nothing is shared with the workspace's build. Nobody reads the
    // debug info of that build (the cases are compiled for their errors; the pass cases only run), so
    // it is left out: the dependencies compile and link faster. The diagnostics are the same.
    if std::env::var_os("CARGO_PROFILE_DEV_DEBUG").is_none() {
        std::env::set_var("CARGO_PROFILE_DEV_DEBUG", "false");
    }
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/fail/*.rs");
    t.pass("tests/ui/*/pass/*.rs");
}
