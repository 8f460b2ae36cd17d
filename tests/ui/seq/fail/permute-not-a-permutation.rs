// Proves: `dims` of Permute that is not a permutation of 1..=rank is an error at the tuple.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input seq: [10, 4];
        output y = Permute((0, 1))(seq);
    }
}

fn main() {}
