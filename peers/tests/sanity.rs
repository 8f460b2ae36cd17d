//! The peers are not wrong-but-fast: every candle and burn model returns outputs of the BENCH.md
//! shapes, and its loss falls over a few Adam steps on a fixed batch.

use modelc_peers::{burn_peer, candle_peer, Runner, Spec};

type Build = fn(Spec, &modelc_peers::Batch) -> modelc_peers::Result<Box<dyn Runner>>;

fn check(build: Build) {
    for spec in Spec::ALL {
        let batch = spec.batch(16);
        let mut runner = build(spec, &batch).expect("runner builds");
        let shapes = runner.infer().expect("inference runs");
        let expected: Vec<Vec<usize>> = spec.outputs().iter().map(|&(width, _)| vec![16, width]).collect();
        assert_eq!(shapes, expected, "{} {} output shapes", runner.name(), spec.id());

        let losses: Vec<f32> = (0..60).map(|_| runner.train_step().expect("train step runs")).collect();
        let (first, last) = (losses[0], losses[losses.len() - 1]);
        assert!(first.is_finite() && last.is_finite(), "{} {} losses {losses:?}", runner.name(), spec.id());
        assert!(last < first, "{} {}: loss did not fall: {losses:?}", runner.name(), spec.id());
        eprintln!("{} {}: loss {first:.4} -> {last:.4} in 60 steps", runner.name(), spec.id());
    }
}

#[test]
fn candle_models_have_the_right_shapes_and_learn() {
    check(candle_peer::runner);
}

#[test]
fn burn_models_have_the_right_shapes_and_learn() {
    check(burn_peer::runner);
}
