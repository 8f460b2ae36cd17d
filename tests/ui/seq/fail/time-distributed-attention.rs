// Proves: TimeDistributed around a layer with call arguments of its own (MultiHeadAttention) is an error
// at the wrapped layer with the fix, not a confusing error later.
use modelc::prelude::*;

model! {
    pub struct Net {
        input x: [3, 5, 8];
        output y = TimeDistributed(MultiHeadAttention(2, 4))(x);
    }
}

fn main() {}
