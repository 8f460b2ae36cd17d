// A shared layer, a nested model and a three-dimensional Dense (Keras applies Dense to the last axis) compile.
use modelc::prelude::*;

model! {
    pub struct Tower {
        input v: [6];
        output w = Dense(3, activation = tanh)(v);
    }

    pub struct Siamese {
        input a: [6];
        input b: [6];
        layer tower = Tower;
        layer enc = Dense(4, activation = relu);
        let ta = enc(tower(a));
        let tb = enc(tower(b));
        output same = Dense(1, activation = sigmoid)(Concatenate()([ta, tb]));
    }
}

model! {
    pub struct Sequence {
        input tokens: [5, 8];
        let h = Dense(16, activation = relu)(tokens);
        output y = Dense(2)(h);
    }
}

#[test]
fn compiles_and_runs() {
    let names: Vec<&str> = <Siamese as Network>::PARAMS.iter().map(|p| p.name).collect();
    assert!(names.contains(&"tower/dense/kernel"), "{names:?}");
    assert!(Sequence::SUMMARY.contains("(None, 5, 2)"), "{}", Sequence::SUMMARY);
}
