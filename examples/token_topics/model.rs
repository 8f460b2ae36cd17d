//! The model and synthetic data of the token_topics example, also trained by tests/normalization.rs.

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;

/// Vocabulary size: id 0 is padding, 1..=24 are topic words (8 per topic), 25.. are filler words.
pub const VOCAB: usize = 40;
/// Tokens per sequence.
pub const LEN: usize = 12;

model! {
    /// Token ids embedded, normalized, averaged over the sequence and classified into three topics.
    pub struct TokenTopics {
        input tokens: [12] as i32;

        let e = Embedding(40, 16)(tokens);
        let e = LayerNormalization()(e);
        let h = GlobalAveragePooling1D()(e);
        let h = Dense(32, activation = relu)(h);
        let h = BatchNormalization()(h);
        let h = Dropout(0.2, seed = 7)(h);
        output topic = Dense(3, activation = softmax)(h);
    }
}

/// `n` sequences and their one-hot topics. A sequence holds 2 to 4 words of its topic, fewer words of
/// another topic, 2 to 5 filler words, and padding at the end: its topic is the most frequent one.
pub fn make_data(n: usize, seed: u64) -> (Array2<i32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let mut pick = |k: usize| (rng.uniform(0.0, k as f32) as usize).min(k - 1);
    let mut tokens = Array2::zeros((n, LEN));
    let mut y = Array2::zeros((n, 3));
    for i in 0..n {
        let topic = pick(3);
        let other = (topic + 1 + pick(2)) % 3;
        let own = 2 + pick(3);
        let (distract, filler) = (pick(own), 2 + pick(4));
        let word = |t: usize, r: usize| (1 + 8 * t + r) as i32;
        let mut seq: Vec<i32> = Vec::with_capacity(LEN);
        seq.extend((0..own).map(|_| word(topic, pick(8))));
        seq.extend((0..distract).map(|_| word(other, pick(8))));
        seq.extend((0..filler).map(|_| (25 + pick(VOCAB - 25)) as i32));
        // Shuffle the words, then pad.
        for j in (1..seq.len()).rev() {
            seq.swap(j, pick(j + 1));
        }
        for (t, id) in seq.into_iter().chain(std::iter::repeat(0)).take(LEN).enumerate() {
            tokens[[i, t]] = id;
        }
        y[[i, topic]] = 1.0;
    }
    (tokens, y)
}
