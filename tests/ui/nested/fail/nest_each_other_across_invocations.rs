// Proves: two models of separate `model!` invocations that use each other as layers are a cycle error
// at the uses, naming both models, rather than a missing macro or an unused input.
use modelc::prelude::*;

model! {
    pub struct Ping {
        input x: [4];
        layer pong = Pong;
        output y = pong(x);
    }
}

model! {
    pub struct Pong {
        input x: [4];
        layer ping = Ping;
        output y = ping(x);
    }
}

fn main() {}
