// Proves: attention whose scores would not fit (heads × query steps × value steps past 2^31 elements per
// sample) is an error at the call, not an overflow while the memory is planned.
use modelc::prelude::*;

model! {
    pub struct Long {
        input q: [65536, 4];
        output y = MultiHeadAttention(2, 4)(q, q);
    }
}

fn main() {}
