// Proves: two models that use each other as layers are one clear error in each, at the use, naming both
// (not "input `x` is never used").
use modelc::prelude::*;

model! {
    pub struct Encoder {
        input x: [4];
        layer decoder = Decoder;
        output y = decoder(x);
    }

    pub struct Decoder {
        input z: [4];
        layer encoder = Encoder;
        output w = encoder(z);
    }
}

fn main() {}
