//! Compile-time diagnostics as users see them: every `tests/ui/<topic>/fail/*.rs` must fail to compile with
//! exactly the errors in its `.stderr`. Regenerate snapshots with `TRYBUILD=overwrite cargo test --test ui`,
//! then review the diff. The `tests/ui/<topic>/pass/*.rs` cases (models that must compile, and whose
//! generated API must work) are modules of the `models` test binary (`tests/models.rs`), not trybuild
//! cases: with only compile-fail cases trybuild runs `cargo check`, so the dependencies are not compiled
//! to machine code a second time.

#[test]
fn ui() {
    // trybuild checks modelc and all its dependencies once more, in `target/tests/trybuild` and with its
    // own flags (`--cfg trybuild`), so nothing is shared with the workspace's build. Nobody reads the
    // debug info of that build (the proc macro is the only code it compiles), so it is left out. The
    // diagnostics are the same.
    if std::env::var_os("CARGO_PROFILE_DEV_DEBUG").is_none() {
        std::env::set_var("CARGO_PROFILE_DEV_DEBUG", "false");
    }
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/fail/*.rs");
}
