// Concatenate along a non-last axis (Keras `axis=1`) joins (None, 2, 8) and (None, 3, 8) into (None, 5, 8).
use modelc::prelude::*;

model! {
    pub struct Stack {
        input a: [2, 8];
        input b: [3, 8];
        output y = Concatenate(axis = 1)([a, b]);
    }
}

#[test]
fn compiles_and_runs() {
    assert!(Stack::SUMMARY.contains("(None, 5, 8)"), "{}", Stack::SUMMARY);
}
